"""A bounded HTTP/1.0 and HTTP/1.1 request parser for the responder. Pure: bytes in, values out.

Only what an OCSP responder needs is read: method, raw request-target (never normalised, since a
GET path is base64 that may contain '/', '+' and '//' prefixes, standards P1/P2), version,
Content-Length, Transfer-Encoding: chunked, Connection, If-None-Match and Expect. Everything is
bounded: the header block, the request-target, the body, chunk-size lines and trailers.

Framing follows RFC 9112 6: a request with both Content-Length and Transfer-Encoding, several
differing Content-Lengths, a Transfer-Encoding other than a lone `chunked`, or obsolete line
folding is refused with 400, because a proxy in front might frame it differently (request
smuggling). So is a field line that is not `token ":" field-value` (RFC 9110 5.1, 5.5: a bare CR
or LF, or a NUL, in a value), and an HTTP/1.1 request without exactly one Host
field (RFC 9112 3.2, MUST). Refusals raise `HTTPError` carrying a 4xx code; nothing here yields a
5xx. tests/test_responder_http1_differential.py checks every accept and refuse against h11.
"""

from __future__ import annotations

import re
from typing import Final

_BAD_TARGET: Final = re.compile(rb"[\x00-\x20\x7f-\xff]")
_TOKEN: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEXDIGITS: Final = re.compile(rb"[0-9A-Fa-f]{1,8}")
# The whole header block in one match (RFC 9110 5.1, 5.5; RFC 9112 5): field-name is a token, no
# whitespace before the colon, no obs-fold, no CR, LF or NUL in a value (MUST reject or replace;
# other control characters MAY be retained, and are, as h11 does).
_FIELD_VALUE: Final = rb"[^\x00\r\n]*"
_FIELD_BLOCK: Final = re.compile(
    rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:" + _FIELD_VALUE + rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:" + _FIELD_VALUE + rb")*"
)
_KNOWN_METHODS: Final = frozenset((b"GET", b"HEAD", b"POST"))
# First letters of the fields we read (Content-Length, Transfer-Encoding, Connection,
# If-None-Match, Expect, Host); other fields are only checked for syntax.
_WANTED: Final = frozenset(b"cCtTiIeEhH")
MAX_CHUNK_LINE: Final = 256
MAX_TRAILERS: Final = 4096


class HTTPError(Exception):
    """A request that is refused at the HTTP level; `code` is the 4xx status to send."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Head:
    """The parsed request line and the few header fields the responder reads."""

    __slots__ = (
        "chunked",
        "content_length",
        "end",
        "expect_continue",
        "http10",
        "if_none_match",
        "keep_alive",
        "method",
        "target",
    )

    def __init__(self, method: bytes, target: bytes, http10: bool, end: int) -> None:
        self.method = method
        self.target = target
        self.http10 = http10
        self.end = end  # offset just past the blank line ending the header block
        self.content_length = 0
        self.chunked = False
        self.keep_alive = not http10
        self.if_none_match: bytes | None = None
        self.expect_continue = False


def parse_head(buf: bytes, start: int, max_head: int, max_target: int) -> Head | None:
    """Parse the request head at `buf[start:]`; None while it is incomplete."""
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line.
    while buf.startswith(b"\r\n", start):
        start += 2
    end = buf.find(b"\r\n\r\n", start, start + max_head + 4)
    if end < 0:
        if len(buf) - start > max_head:
            line_end = buf.find(b"\r\n", start, start + max_head)
            raise HTTPError(414 if line_end < 0 and max_head > max_target else 431)
        return None
    line_end = buf.find(b"\r\n", start, end + 2)
    parts = buf[start:line_end].split(b" ")
    if len(parts) != 3:
        raise HTTPError(414 if line_end - start > max_target + 32 else 400)
    method, target, version = parts
    if version == b"HTTP/1.1":
        http10 = False
    elif version == b"HTTP/1.0":
        http10 = True
    else:
        # Not 505: a client's bytes never earn a 5xx here. HTTP/2 prior knowledge lands here too.
        raise HTTPError(400)
    if len(target) > max_target:
        raise HTTPError(414)
    if not target or _BAD_TARGET.search(target):
        raise HTTPError(400)
    if method not in _KNOWN_METHODS and _TOKEN.fullmatch(method) is None:
        raise HTTPError(400)
    if target[0] != 0x2F:  # '/'
        target = _origin_form(target)
    head = Head(method, target, http10, end + 4)
    if end > line_end:
        _read_fields(head, buf[line_end + 2 : end])
    elif not http10:
        raise HTTPError(400)  # no Host field
    return head


def _origin_form(target: bytes) -> bytes:
    """RFC 9112 3.2.2: absolute-form (sent to proxies) carries the path after the authority."""
    lower = target[:8].lower()
    if lower.startswith(b"http://") or lower.startswith(b"https://"):
        slash = target.find(b"/", target.find(b"//") + 2)
        return target[slash:] if slash >= 0 else b"/"
    if target == b"*":  # asterisk-form, only meaningful for OPTIONS, which is refused anyway
        return target
    raise HTTPError(400)


def _read_fields(head: Head, block: bytes) -> None:
    if _FIELD_BLOCK.fullmatch(block) is None:
        raise HTTPError(400)
    content_length: int | None = None
    transfer_encoding = False
    close = keep_alive = False
    hosts = 0
    for line in block.split(b"\r\n"):
        if line[0] not in _WANTED:
            continue
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            value = value.strip(b" \t")
            if not value.isdigit() or len(value) > 12:
                raise HTTPError(400)
            length = int(value)
            if content_length is not None and content_length != length:
                raise HTTPError(400)
            content_length = length
        elif name == b"transfer-encoding":
            if transfer_encoding or head.http10 or value.strip(b" \t").lower() != b"chunked":
                raise HTTPError(400)
            transfer_encoding = True
        elif name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    keep_alive = True
        elif name == b"if-none-match":
            value = value.strip(b" \t")
            head.if_none_match = value if head.if_none_match is None else head.if_none_match + b"," + value
        elif name == b"expect":
            head.expect_continue = value.strip(b" \t").lower() == b"100-continue"
    if hosts > 1 or (hosts == 0 and not head.http10):
        raise HTTPError(400)  # RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0
    if transfer_encoding:
        if content_length is not None:
            raise HTTPError(400)  # RFC 9112 6.1: both present is a smuggling attempt
        head.chunked = True
    elif content_length is not None:
        head.content_length = content_length
    if close:
        head.keep_alive = False
    elif head.http10:
        head.keep_alive = keep_alive


def decode_chunked(buf: bytes, start: int, limit: int) -> tuple[bytes, int] | None:
    """RFC 9112 7.1 chunked body at `buf[start:]` -> (body, end offset); None while incomplete.

    HTTPError(413) once the body exceeds `limit`, HTTPError(400) for bad framing.
    """
    pos = start
    parts: list[bytes] = []
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
        if line_end < 0:
            if len(buf) - pos >= MAX_CHUNK_LINE:
                raise HTTPError(400)
            return None
        size_text = buf[pos:line_end].split(b";", 1)[0].strip(b" \t")
        if _HEXDIGITS.fullmatch(size_text) is None:
            raise HTTPError(400)
        size = int(size_text, 16)
        pos = line_end + 2
        if size == 0:
            break
        total += size
        if total > limit:
            raise HTTPError(413)
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise HTTPError(400)
        parts.append(buf[pos : pos + size])
        pos += size + 2
    # Trailer section: fields we ignore, ended by an empty line.
    trailers_start = pos
    while True:
        line_end = buf.find(b"\r\n", pos, trailers_start + MAX_TRAILERS)
        if line_end < 0:
            if len(buf) - trailers_start >= MAX_TRAILERS:
                raise HTTPError(431)
            return None
        if line_end == pos:
            return b"".join(parts), pos + 2
        pos = line_end + 2
