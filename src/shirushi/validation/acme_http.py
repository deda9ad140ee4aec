"""BR 3.2.2.4.19 Agreed-Upon Change to Website - ACME: the http-01 challenge (RFC 8555 8.3).
Does network I/O.

GET http://<name>/.well-known/acme-challenge/<token> on `validation.http_port` must answer the
key authorization (trailing whitespace allowed, RFC 8555 8.3). Not for wildcards.
"""

from __future__ import annotations

import hmac

from shirushi.validation.attempt import Attempt
from shirushi.validation.dns import Resolver
from shirushi.validation.http_fetch import fetch

METHOD = "3.2.2.4.19"
PREFIX = "/.well-known/acme-challenge/"


def check(
    resolver: Resolver, name: str, token: str, key_authorization: str, *, port: int, allow_loopback: bool
) -> Attempt:
    if name.startswith("*."):
        return Attempt(METHOD, name, token, False, "rejectedIdentifier", "http-01 cannot validate a wildcard")
    got = fetch(resolver, name, PREFIX + token, port=port, allow_loopback=allow_loopback)
    if not got.ok:
        return Attempt(METHOD, name, token, False, got.problem, got.detail, got.steps)
    if hmac.compare_digest(got.body.rstrip(), key_authorization.encode("ascii")):
        return Attempt(METHOD, name, token, True, answers=got.steps)
    return Attempt(
        METHOD, name, token, False, "incorrectResponse", "the response is not the key authorization", got.steps
    )
