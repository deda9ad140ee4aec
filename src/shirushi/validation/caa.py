"""CAA checking (BR 3.2.2.8, RFC 8659, RFC 8657 parameters). Lookups through `dns.Resolver`;
the decision (`evaluate`) is pure.

The relevant record set is the first non-empty CAA RRset climbing from the name towards the
root (RFC 8659 3; the resolver follows CNAMEs). A SERVFAIL or timeout at any step refuses:
a failed lookup is never taken as permission. Within the set, a critical flag on an unknown
tag refuses; `issuewild` governs wildcard names when present, `issue` otherwise; a set without
either allows any CA. Issuer domain names compare case-insensitively with
`validation.caa_identities`; RFC 8657 `accounturi` and `validationmethods` narrow a record.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shirushi.validation.dns import Answer, Resolver

KNOWN_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"}
CRITICAL = 0x80


@dataclasses.dataclass(frozen=True)
class CAAResult:
    name: str
    allowed: bool
    reason: str
    relevant: str | None = None  # the domain whose RRset decided
    answers: tuple[Answer, ...] = ()

    def audit(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "allowed": self.allowed,
            "reason": self.reason,
            "relevant": self.relevant,
            "answers": [a.audit() for a in self.answers],
        }


def check(
    resolver: Resolver,
    name: str,
    identities: tuple[str, ...],
    *,
    account_uri: str | None = None,
    method: str | None = None,
) -> CAAResult:
    """Whether CAA lets us issue for `name` (a dNSName, possibly "*.x")."""
    wildcard = name.startswith("*.")
    labels = name.removeprefix("*.").rstrip(".").split(".")
    answers: list[Answer] = []
    for i in range(len(labels)):
        domain = ".".join(labels[i:])
        answer = resolver.lookup(domain, "CAA")
        answers.append(answer)
        if answer.rcode not in ("NOERROR", "NXDOMAIN"):
            return CAAResult(name, False, f"CAA lookup of {domain} failed: {answer.rcode}", domain, tuple(answers))
        if answer.caa:
            allowed, reason = evaluate(answer.caa, identities, wildcard, account_uri=account_uri, method=method)
            return CAAResult(name, allowed, reason, domain, tuple(answers))
    return CAAResult(name, True, "no CAA record", None, tuple(answers))


def evaluate(
    records: tuple[tuple[int, str, str], ...],
    identities: tuple[str, ...],
    wildcard: bool,
    *,
    account_uri: str | None = None,
    method: str | None = None,
) -> tuple[bool, str]:
    """RFC 8659 4.2/4.3 over one relevant RRset of (flags, tag, value)."""
    for flags, tag, _value in records:
        if flags & CRITICAL and tag not in KNOWN_TAGS:
            return False, f"critical CAA tag {tag!r} is not understood (RFC 8659 4.1)"
    issue = [v for _f, t, v in records if t == "issue"]
    issuewild = [v for _f, t, v in records if t == "issuewild"]
    governing, tag = (issuewild, "issuewild") if wildcard and issuewild else (issue, "issue")
    if not governing:
        return True, "the CAA record set has no issue or issuewild property"
    ours = {i.lower().rstrip(".") for i in identities}
    for value in governing:
        domain, params = parse_issue_value(value)
        if domain is None or domain.lower() not in ours:
            continue
        uri = params.get("accounturi")
        if uri is not None and uri != account_uri:
            continue
        methods = params.get("validationmethods")
        if methods is not None and (method is None or method not in methods.split(",")):
            continue
        return True, f"CAA {tag} names {domain}"
    return False, f"CAA {tag} does not name {', '.join(sorted(ours))}"


def parse_issue_value(value: str) -> tuple[str | None, dict[str, str]]:
    """RFC 8659 4.2: `[issuer-domain-name] *(";" key "=" value)`; a bad value names no one."""
    head, _, rest = value.partition(";")
    domain = head.strip() or None
    if domain is not None and not all(part and part.replace("-", "").isalnum() for part in domain.split(".")):
        return None, {}
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, sep, val = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip()
    return domain, params
