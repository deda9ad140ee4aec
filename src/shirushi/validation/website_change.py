"""BR 3.2.2.4.18 Agreed-Upon Change to Website v2: the random value in a file under
`/.well-known/pki-validation/`, fetched over HTTP on `validation.http_port`. Does network I/O.

Not for wildcards (the BR allows them only for DNS-based methods).
"""

from __future__ import annotations

from shirushi.validation.attempt import Attempt
from shirushi.validation.dns import Resolver
from shirushi.validation.http_fetch import fetch

METHOD = "3.2.2.4.18"
PREFIX = "/.well-known/pki-validation/"


def check(resolver: Resolver, name: str, file_name: str, value: str, *, port: int, allow_loopback: bool) -> Attempt:
    if name.startswith("*."):
        return Attempt(METHOD, name, value, False, "rejectedIdentifier", "BR 3.2.2.4.18 cannot validate a wildcard")
    got = fetch(resolver, name, PREFIX + file_name, port=port, allow_loopback=allow_loopback)
    if not got.ok:
        return Attempt(METHOD, name, value, False, got.problem, got.detail, got.steps)
    if value.encode("ascii") in got.body:  # the BR: the value appears in the file's content
        return Attempt(METHOD, name, value, True, answers=got.steps)
    return Attempt(
        METHOD, name, value, False, "incorrectResponse", "the file does not hold the random value", got.steps
    )
