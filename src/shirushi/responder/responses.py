"""Prebuilt HTTP responses of the responder: OCSP answers, OCSP errors, HTTP errors. Pure.

Everything that does not depend on the request or the clock is built once (docs/standards.md,
hot-path rule 2): the unsigned OCSP error bodies, their header blocks, the fixed caching headers
of each cached record. Per request only the Date line, the max-age value and the Connection
header are joined in.

Caching headers follow RFC 9919 6 and 7.2 (standards LW-12, LW-13): authoritative answers to GET
carry `Cache-Control: max-age=N, public, no-transform, must-revalidate`, Last-Modified
(thisUpdate), Expires (nextUpdate), ETag and Date; error answers carry
`Cache-Control: no-cache, no-store, must-revalidate` so that no cache keeps them.
"""

from __future__ import annotations

import email.utils
from typing import Final

from shirushi.cache.records import Record
from shirushi.responder.request import INTERNAL_ERROR, MALFORMED_REQUEST, TRY_LATER, UNAUTHORIZED
from shirushi.responder.tally import GOOD, REVOKED

CONTENT_TYPE: Final = b"Content-Type: application/ocsp-response\r\n"  # exactly; nginx (standards P10)
KEEP: Final = b""  # HTTP/1.1 default: persistent connection
KEEP_10: Final = b"Connection: keep-alive\r\n"  # HTTP/1.0 client that asked for keep-alive
CLOSE: Final = b"Connection: close\r\n"


def http_date(seconds: int) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7), e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    return email.utils.formatdate(seconds, usegmt=True).encode("ascii")


def date_line(seconds: int) -> bytes:
    return b"Date: " + http_date(seconds) + b"\r\n"


def ocsp_error_body(status: int) -> bytes:
    """An unsigned OCSPResponse with only responseStatus (RFC 6960 4.2.1: no responseBytes)."""
    # OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT OPTIONAL }
    return bytes((0x30, 0x03, 0x0A, 0x01, status))


_ERROR_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\n" + CONTENT_TYPE + b"Content-Length: 5\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
)
OCSP_ERRORS: Final = {
    status: (_ERROR_HEAD, ocsp_error_body(status))
    for status in (MALFORMED_REQUEST, INTERNAL_ERROR, TRY_LATER, UNAUTHORIZED)
}


def ocsp_error(status: int, date: bytes, connection: bytes, head_only: bool = False) -> bytes:
    """HTTP 200 carrying an OCSP error status (nginx requires 200, standards P20)."""
    head, body = OCSP_ERRORS[status]
    return b"".join((head, date, connection, b"\r\n", b"" if head_only else body))


# HTTP-level refusals. None is 5xx: nothing a client sends may look like a server failure.
_REASONS: Final = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
ALLOW: Final = b"Allow: GET, HEAD, POST\r\n"


def http_error(code: int, date: bytes) -> bytes:
    """A short plain-text refusal; the connection is always closed after it."""
    reason = _REASONS[code]
    body = reason + b"\n"
    extra = ALLOW if code == 405 else b""
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (code, reason),
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body),
            extra,
            date,
            CLOSE,
            b"\r\n",
            body,
        )
    )


class Answer:
    """A cached record with its HTTP header fragments prebuilt."""

    __slots__ = (
        "_date",
        "_get_keep",
        "_post_keep",
        "der",
        "etag",
        "fixed",
        "next_update",
        "ok_head",
        "refresh_by",
        "status",
    )

    def __init__(self, record: Record) -> None:
        # The two commonest answers (GET and POST on a persistent HTTP/1.1 connection) are kept
        # rendered for the current Date line; they change only when the second does.
        self._date = b""
        self._get_keep = b""
        self._post_keep = b""
        self.der = record.der
        self.etag = record.etag.encode("ascii")
        self.next_update = record.next_update
        self.refresh_by = record.refresh_by
        # The status version goes up with a revocation and never down (no suspension), so a
        # record above 0 holds a revoked status: the metrics need no DER parse.
        self.status = REVOKED if record.status_version > 0 else GOOD
        self.ok_head = b"HTTP/1.1 200 OK\r\n" + CONTENT_TYPE + b"Content-Length: %d\r\n" % len(record.der)
        self.fixed = b"".join(
            (
                b"Last-Modified: ",
                http_date(record.this_update),
                b"\r\nExpires: ",
                http_date(record.next_update),
                b"\r\nETag: ",
                self.etag,
                b"\r\n",
            )
        )

    def get_keep(self, now: int, cap: int, date: bytes) -> bytes:
        """`get(..., KEEP, False)`, rendered once per second."""
        if date is not self._date:
            self._refresh(now, cap, date)
        return self._get_keep

    def post_keep(self, now: int, cap: int, date: bytes) -> bytes:
        """`post(date, KEEP)`, rendered once per second."""
        if date is not self._date:
            self._refresh(now, cap, date)
        return self._post_keep

    def _refresh(self, now: int, cap: int, date: bytes) -> None:
        self._get_keep = self.get(now, cap, date, KEEP, False)
        self._post_keep = self.post(date, KEEP)
        self._date = date

    def max_age(self, now: int, cap: int) -> int:
        """RFC 9919 7.1: fresh no longer than nextUpdate, the planned re-signing, or the cap."""
        return max(0, min(self.next_update - now, self.refresh_by - now, cap))

    def post(self, date: bytes, connection: bytes) -> bytes:
        return b"".join((self.ok_head, date, connection, b"\r\n", self.der))

    def get(self, now: int, cap: int, date: bytes, connection: bytes, head_only: bool) -> bytes:
        return b"".join(
            (
                self.ok_head,
                date,
                b"Cache-Control: max-age=%d, public, no-transform, must-revalidate\r\n" % self.max_age(now, cap),
                self.fixed,
                connection,
                b"\r\n",
                b"" if head_only else self.der,
            )
        )

    def not_modified(self, now: int, cap: int, date: bytes, connection: bytes) -> bytes:
        """304 (RFC 9110 15.4.5): Cache-Control, Date, ETag and Expires as the 200 would have."""
        return b"".join(
            (
                b"HTTP/1.1 304 Not Modified\r\n",
                date,
                b"Cache-Control: max-age=%d, public, no-transform, must-revalidate\r\n" % self.max_age(now, cap),
                self.fixed,
                connection,
                b"\r\n",
            )
        )

    def matches(self, if_none_match: bytes) -> bool:
        """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
        if if_none_match.strip() == b"*":
            return True
        for tag in if_none_match.split(b","):
            tag = tag.strip()
            if tag.startswith(b"W/"):
                tag = tag[2:]
            if tag == self.etag:
                return True
        return False
