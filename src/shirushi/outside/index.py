"""The OpenSSL `ca` database (`index.txt`, also easy-rsa's): a streaming parser. Pure.

One line per certificate, six tab-separated fields (openssl-ca(1), apps/lib/apps.c):

    status  expiry  revocation  serial  filename  subject

status is V (valid), R (revoked) or E (expired); expiry and the revocation time are UTCTime
(YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ); the revocation field is
`time[,reason[,extra]]` where reason is one of `openssl ca -crl_reason`'s names, `keyTime` (a
keyCompromise whose extra is the compromise time), `CAkeyTime` (cACompromise, likewise) or
`holdInstruction` (certificateHold, the extra is the instruction OID). A bad line becomes a
`LineError` carrying its number; it never stops the lines after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator

from shirushi.reasons import ReasonName

UTC = dt.UTC
MAX_LINE = 64 * 1024  # a DN longer than this is not a certificate's

# `openssl ca` reason names (apps/ca.c crl_reasons) -> RFC 5280 names.
REASONS: dict[str, ReasonName] = {
    "unspecified": "unspecified",
    "keyCompromise": "keyCompromise",
    "CACompromise": "cACompromise",
    "affiliationChanged": "affiliationChanged",
    "superseded": "superseded",
    "cessationOfOperation": "cessationOfOperation",
    "certificateHold": "certificateHold",
    "removeFromCRL": "removeFromCRL",
    "privilegeWithdrawn": "privilegeWithdrawn",
    "AACompromise": "aACompromise",
    "holdInstruction": "certificateHold",
    "keyTime": "keyCompromise",
    "CAkeyTime": "cACompromise",
}


# Not frozen: a frozen dataclass pays one object.__setattr__ per field, and an import makes
# one per index line (bench/outside). Never changed once made.
@dataclasses.dataclass(slots=True)
class IndexEntry:
    """One certificate as the CA's database records it."""

    line: int
    serial: int
    not_after: dt.datetime
    subject: str
    revoked_at: dt.datetime | None = None
    reason: ReasonName | None = None
    compromised_at: dt.datetime | None = None  # keyTime / CAkeyTime


@dataclasses.dataclass(frozen=True, slots=True)
class LineError:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


class BadField(ValueError):
    pass


def parse_time(text: str) -> dt.datetime:
    """UTCTime (YYMMDDHHMMSSZ, RFC 5280 4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime."""
    size = len(text)
    if (size != 13 and size != 15) or text[-1] != "Z" or not text[:-1].isdigit():
        raise BadField(f"time {text!r} is neither YYMMDDHHMMSSZ nor YYYYMMDDHHMMSSZ")
    if size == 13:
        text = ("20" if text < "50" else "19") + text
    try:
        # The C parser of ISO 8601's basic format: a million lines pay for this one call each.
        return dt.datetime.fromisoformat(text[:8] + "T" + text[8:14] + "+00:00")
    except ValueError:
        raise BadField(f"time {text!r} is not a calendar date") from None


def parse_serial(text: str) -> int:
    if not text or len(text) > 42:
        raise BadField(f"serial {text!r} is not 1 to 20 octets of hex")
    try:
        value = int(text, 16)
    except ValueError:
        raise BadField(f"serial {text!r} is not hexadecimal") from None
    if value <= 0:
        raise BadField(f"serial {text!r} is not positive")
    return value


def parse_revocation(text: str) -> tuple[dt.datetime, ReasonName, dt.datetime | None]:
    parts = text.split(",")
    if len(parts) > 3:
        raise BadField(f"revocation field {text!r} has more than three parts")
    revoked_at = parse_time(parts[0])
    reason: ReasonName = "unspecified"
    compromised = None
    if len(parts) >= 2:
        name = parts[1]
        if name not in REASONS:
            raise BadField(f"unknown revocation reason {name!r}")
        reason = REASONS[name]
        if name in ("keyTime", "CAkeyTime"):
            if len(parts) != 3:
                raise BadField(f"{name} without its compromise time")
            compromised = parse_time(parts[2])
        elif name == "holdInstruction" and len(parts) != 3:
            raise BadField("holdInstruction without its instruction")
    return revoked_at, reason, compromised


def parse_line(number: int, line: str) -> IndexEntry | LineError | None:
    """One line: an entry, an error, or None for a blank line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if len(text) > MAX_LINE:
        return LineError(number, f"longer than {MAX_LINE} characters")
    fields = text.split("\t")
    if len(fields) != 6:
        return LineError(number, f"{len(fields)} tab-separated fields, not 6 (truncated or not an index?)")
    status, expiry, revocation, serial, _filename, subject = fields
    try:
        if status == "R":
            if not revocation:
                raise BadField("status R without a revocation time")
            revoked_at, reason, compromised = parse_revocation(revocation)
            return IndexEntry(
                number, parse_serial(serial), parse_time(expiry), subject, revoked_at, reason, compromised
            )
        if status != "V" and status != "E":
            raise BadField(f"status {status!r} is not V, R or E")
        if revocation:
            raise BadField(f"status {status} with a revocation field {revocation!r}")
        return IndexEntry(number, parse_serial(serial), parse_time(expiry), subject)
    except BadField as exc:
        return LineError(number, str(exc))


def parse_index(lines: Iterable[str]) -> Iterator[IndexEntry | LineError]:
    """Every entry and every bad line, in order, streamed."""
    for number, line in enumerate(lines, start=1):
        result = parse_line(number, line)
        if result is not None:
            yield result
