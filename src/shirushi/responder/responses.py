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

import binascii
import time
from typing import Final

from shirushi.cache.records import Record
from shirushi.responder.request import INTERNAL_ERROR, MALFORMED_REQUEST, TRY_LATER, UNAUTHORIZED
from shirushi.responder.tally import GOOD, REVOKED

CONTENT_TYPE: Final = b"Content-Type: application/ocsp-response\r\n"  # exactly; nginx (standards P10)
KEEP: Final = b""  # HTTP/1.1 default: persistent connection
KEEP_10: Final = b"Connection: keep-alive\r\n"  # HTTP/1.0 client that asked for keep-alive
CLOSE: Final = b"Connection: close\r\n"


_DAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
# What a cached answer holds besides its DER: the header fragments, the two rendered heads, the
# Python objects and the cache's dict slot, key and tuple (measured with tracemalloc, rounded up;
# bench/responder/profile_mix.py prints the figure); counted with the DER against ocsp.cache_mb.
ANSWER_OVERHEAD: Final = 1300


def http_date(seconds: int) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7), e.g. b"Sun, 06 Nov 1994 08:49:37 GMT".

    Formatted directly from time.gmtime: email.utils.formatdate costs several times more, and
    every record read from Redis needs two of these."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


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


# Answers read from Redis in a burst (a cold cache, a wave of expiries) mostly share their
# thisUpdate and nextUpdate (the presigner signs thousands per second) and their DER length:
# their header fragments are formatted once. Bounded; emptied when full.
_MEMO_LIMIT: Final = 4096
_DATES_MEMO: dict[tuple[int, int], bytes] = {}
_OK_HEADS_MEMO: dict[int, bytes] = {}


def _dates(this_update: int, next_update: int) -> bytes:
    """The Last-Modified and Expires lines and the start of the ETag line, for these times."""
    key = (this_update, next_update)
    fragment = _DATES_MEMO.get(key)
    if fragment is None:
        if len(_DATES_MEMO) >= _MEMO_LIMIT:
            _DATES_MEMO.clear()
        fragment = _DATES_MEMO[key] = b"".join(
            (b"Last-Modified: ", http_date(this_update), b"\r\nExpires: ", http_date(next_update), b"\r\nETag: ")
        )
    return fragment


def _ok_head(length: int) -> bytes:
    head = _OK_HEADS_MEMO.get(length)
    if head is None:
        if len(_OK_HEADS_MEMO) >= _MEMO_LIMIT:
            _OK_HEADS_MEMO.clear()
        head = _OK_HEADS_MEMO[length] = b"HTTP/1.1 200 OK\r\n" + CONTENT_TYPE + b"Content-Length: %d\r\n" % length
    return head


class Answer:
    """A cached record with its HTTP header fragments prebuilt."""

    __slots__ = (
        "_get_date",
        "_get_head",
        "_post_date",
        "_post_head",
        "der",
        "etag",
        "fixed",
        "next_update",
        "ok_head",
        "refresh_by",
        "size",
        "status",
    )

    def __init__(
        self, der: bytes, this_update: int, next_update: int, refresh_by: int, sha256: bytes, status_version: int = 0
    ) -> None:
        """From a record's fields (`records.Fields`, in that order): `Answer(*fields)`."""
        # The head of the two commonest answers (GET and POST on a persistent HTTP/1.1
        # connection) is kept for the current Date line, each rendered only once asked: with many
        # distinct answers most are asked less than once a second, and only the head is kept so
        # a cached answer costs little more than its DER.
        self._get_date = self._post_date = b""
        self._get_head = self._post_head = b""
        self.der = der
        self.etag = b'"' + binascii.hexlify(sha256) + b'"'
        self.next_update = next_update
        self.refresh_by = refresh_by
        # The status version goes up with a revocation and never down (no suspension), so a
        # record above 0 holds a revoked status: the metrics need no DER parse.
        self.status = REVOKED if status_version > 0 else GOOD
        self.ok_head = _ok_head(len(der))
        self.fixed = _dates(this_update, next_update) + self.etag + b"\r\n"
        # What this answer holds in memory, for the byte-bounded cache (lookup.L1).
        self.size = len(der) + ANSWER_OVERHEAD

    @classmethod
    def of(cls, record: Record) -> Answer:
        return cls(
            record.der, record.this_update, record.next_update, record.refresh_by, record.sha256, record.status_version
        )

    def get_keep(self, now: int, cap: int, date: bytes) -> bytes:
        """`get(..., KEEP, False)`, its head rendered once per second."""
        if date is not self._get_date:
            self._get_head = self.get(now, cap, date, KEEP, True)
            self._get_date = date
        return self._get_head + self.der

    def post_keep(self, now: int, cap: int, date: bytes) -> bytes:
        """`post(date, KEEP)`, its head rendered once per second."""
        if date is not self._post_date:
            self._post_head = b"".join((self.ok_head, date, b"\r\n"))
            self._post_date = date
        return self._post_head + self.der

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
