"""BR 3.2.2.4.7 DNS Change: the random value in a TXT record of `_acme-challenge.<name>`. Does I/O.

The same method backs ACME dns-01 (RFC 8555 8.4), whose TXT value is the digest of the key
authorization. The underscore-prefixed label is the method's "Domain Label that begins with an
underscore". DNS-based, so it may also cover a wildcard of the name (BR 3.2.2.4 last paragraph).
"""

from __future__ import annotations

import hmac

from shirushi.validation.attempt import Attempt
from shirushi.validation.dns import Resolver

METHOD = "3.2.2.4.7"
LABEL = "_acme-challenge"


def check(resolver: Resolver, name: str, expected: str) -> Attempt:
    qname = f"{LABEL}.{name.removeprefix('*.')}"
    answer, values = resolver.txt(qname)
    seen = (f"{qname} TXT {answer.rcode} {' '.join(answer.records)}".rstrip(),)
    if answer.rcode not in ("NOERROR", "NXDOMAIN"):
        return Attempt(METHOD, name, expected, False, "dns", f"{qname}: DNS {answer.rcode}", seen)
    if any(hmac.compare_digest(v.encode(), expected.encode()) for v in values):
        return Attempt(METHOD, name, expected, True, answers=seen)
    if not values:
        return Attempt(METHOD, name, expected, False, "unauthorized", f"no TXT record at {qname}", seen)
    return Attempt(METHOD, name, expected, False, "incorrectResponse", f"TXT at {qname} does not hold the value", seen)
