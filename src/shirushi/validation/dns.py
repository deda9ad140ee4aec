"""DNS lookups for validation and CAA through dnspython, at `validation.resolver`. Does I/O.

Answers are values: `Answer.rcode` says NOERROR / NXDOMAIN / SERVFAIL / TIMEOUT, so each caller
decides (CAA refuses on SERVFAIL and timeouts, BR 3.2.2.8; the DNS methods just fail). Every
answer is kept for the audit record (policy 5.4.1).
"""

from __future__ import annotations

import dataclasses

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from shirushi.config_values import parse_listen

TIMEOUT = 5.0  # seconds for one lookup, retries included: a stalling server cannot hold us


@dataclasses.dataclass(frozen=True)
class Answer:
    name: str
    rtype: str
    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "TIMEOUT", ...
    records: tuple[str, ...] = ()
    # CAA records as (flags, tag, value); empty for other types.
    caa: tuple[tuple[int, str, str], ...] = ()

    def audit(self) -> dict[str, object]:
        return {"name": self.name, "type": self.rtype, "rcode": self.rcode, "records": list(self.records)}


class Resolver:
    """A stub resolver: the configured server, or the system's when `address` is ""."""

    def __init__(self, address: str = "", timeout: float = TIMEOUT) -> None:
        if address:
            host, port = parse_listen(address)
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        # One answer from the configured server is the answer: a SERVFAIL is not retried away.
        self._resolver.retry_servfail = False

    def lookup(self, name: str, rtype: str) -> Answer:
        qname = name.rstrip(".") + "."
        try:
            result = self._resolver.resolve(qname, rtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return Answer(name, rtype, "NXDOMAIN")
        except dns.resolver.NoNameservers as exc:
            # Every server answered badly; the first answer's rcode says how (SERVFAIL, REFUSED).
            rcode = "SERVFAIL"
            errors = exc.kwargs.get("errors") or []
            for error in errors:
                answer = error[4] if len(error) > 4 else None
                if isinstance(answer, dns.message.Message):
                    rcode = dns.rcode.to_text(answer.rcode())
                    break
            return Answer(name, rtype, rcode)
        except dns.exception.Timeout:
            return Answer(name, rtype, "TIMEOUT")
        except dns.exception.DNSException as exc:
            return Answer(name, rtype, f"ERROR {type(exc).__name__}")
        rrset = result.rrset
        if rrset is None:
            return Answer(name, rtype, "NOERROR")
        records = tuple(r.to_text() for r in rrset)
        caa: tuple[tuple[int, str, str], ...] = ()
        if rtype == "CAA":
            caa = tuple(
                (int(r.flags), r.tag.decode("ascii", "replace").lower(), r.value.decode("utf-8", "replace"))
                for r in rrset
            )
        return Answer(name, rtype, "NOERROR", records, caa)

    def txt(self, name: str) -> tuple[Answer, list[str]]:
        """TXT strings at `name` (each record's strings joined, RFC 7208 3.3 style)."""
        answer = self.lookup(name, "TXT")
        values = []
        for text in answer.records:
            parts = [p.strip('"') for p in text.split('" "')]
            values.append("".join(parts))
        return answer, values

    def addresses(self, name: str) -> tuple[list[Answer], list[str]]:
        """A then AAAA addresses of `name`."""
        answers = [self.lookup(name, "A"), self.lookup(name, "AAAA")]
        return answers, [r for a in answers for r in a.records]
