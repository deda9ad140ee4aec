"""The HTTP fetch behind BR 3.2.2.4.18 and 3.2.2.4.19 (ACME http-01). Does network I/O.

Rules (BR 3.2.2.4.18/19): plain HTTP to the configured port (80 in production); redirects only
as HTTP 301/302/307/308 with a Location at the HTTP layer, at most MAX_REDIRECTS, each to
http(s) on the validation port or 443 (we follow only http); every address the name resolves
to is checked (no private, link-local or, unless allowed, loopback targets) and the connection
goes to that checked address, so the name cannot be re-resolved elsewhere in between; the body
is read up to MAX_BODY bytes (more is a failure, not a truncation); every step has a timeout.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import time
import urllib.parse

from shirushi.validation.addresses import refusal
from shirushi.validation.dns import Resolver

MAX_REDIRECTS = 10
MAX_BODY = 8192  # a random value or key authorization is under 200 bytes
TIMEOUT = 10.0  # seconds for the whole fetch, redirects included
REDIRECTS = (301, 302, 307, 308)


@dataclasses.dataclass(frozen=True)
class Fetched:
    ok: bool
    body: bytes = b""
    # ACME problem type when not ok: "connection", "dns", "unauthorized", "incorrectResponse".
    problem: str = ""
    detail: str = ""
    steps: tuple[str, ...] = ()


class _Failed(Exception):
    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


def fetch(
    resolver: Resolver, host: str, path: str, *, port: int, allow_loopback: bool, timeout: float = TIMEOUT
) -> Fetched:
    """GET http://host:port/path under the rules above."""
    deadline = time.monotonic() + timeout
    steps: list[str] = []
    url = f"http://{host}:{port}{path}"
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            steps.append(url)
            status, location, body = _get(resolver, url, port, allow_loopback, deadline, steps)
            if status in REDIRECTS:
                if not location:
                    raise _Failed("connection", f"{url}: redirect without Location")
                url = _redirect_target(url, location, port)
                continue
            if status != 200:
                return Fetched(False, b"", "unauthorized", f"{url}: HTTP status {status}", tuple(steps))
            return Fetched(True, body, "", "", tuple(steps))
        raise _Failed("connection", f"more than {MAX_REDIRECTS} redirects")
    except _Failed as exc:
        return Fetched(False, b"", exc.problem, exc.detail, tuple(steps))


def _redirect_target(current: str, location: str, port: int) -> str:
    target = urllib.parse.urljoin(current, location)
    parts = urllib.parse.urlsplit(target)
    if parts.scheme != "http":
        raise _Failed("connection", f"redirect to {parts.scheme or 'no'} scheme refused: {target}")
    if (parts.port or 80) != port:
        raise _Failed("connection", f"redirect to port {parts.port or 80} refused (BR 3.2.2.4.18: port {port})")
    if not parts.hostname:
        raise _Failed("connection", f"redirect without a host: {target}")
    return target


def _get(
    resolver: Resolver, url: str, port: int, allow_loopback: bool, deadline: float, steps: list[str]
) -> tuple[int, str, bytes]:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    answers, addresses = resolver.addresses(host)
    steps.extend(f"{a.name} {a.rtype} {a.rcode} {' '.join(a.records)}".rstrip() for a in answers)
    if not addresses:
        raise _Failed("dns", f"{host} has no A or AAAA record")
    for address in addresses:
        why = refusal(address, allow_loopback=allow_loopback)
        if why:
            raise _Failed("connection", f"{host} resolves to {address}: {why}")
    last = ""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        conn = http.client.HTTPConnection(address, parts.port or 80, timeout=remaining)
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host if (parts.port or 80) == 80 else f"{host}:{parts.port}")
            conn.putheader("User-Agent", "shirushi-validation")
            conn.putheader("Accept", "*/*")
            conn.endheaders()
            response = conn.getresponse()
            body = _read_bounded(response, deadline)
            return response.status, response.getheader("Location", ""), body
        except _Failed:
            raise
        except (OSError, http.client.HTTPException) as exc:
            last = f"{address}: {type(exc).__name__} {exc}".strip()
            if isinstance(exc, socket.timeout | TimeoutError):
                raise _Failed("connection", f"{url}: timed out") from None
        finally:
            conn.close()
    raise _Failed("connection", f"{url}: {last or 'timed out'}")


def _read_bounded(response: http.client.HTTPResponse, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise _Failed("connection", "response body too slow: timed out")
        chunk = response.read1(4096)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            # RFC 8555 6.7 incorrectResponse: no key authorization or random value is this long.
            raise _Failed("incorrectResponse", f"response larger than {MAX_BODY} bytes")
        chunks.append(chunk)
