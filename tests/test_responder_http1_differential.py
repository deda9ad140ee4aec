"""The responder's HTTP/1 head parser (responder/http1.py) against h11 on generated request heads.

h11 is a strict, well-kept HTTP/1.1 implementation. For every generated head the two must agree:
both accept it, with the same method, target, version and body framing, or both refuse it. Our
parser is deliberately stricter than h11 in a few places, each a rule about framing that a proxy
in front could read differently (request smuggling); there, and only there, it may refuse what
h11 accepts, and never the other way round:

* a version other than HTTP/1.0 and HTTP/1.1 (RFC 9112 2.3: h11 takes any HTTP/x.y);
* a request-target that is not origin-form, absolute-form or "*" (RFC 9112 3.2);
* Content-Length together with Transfer-Encoding (RFC 9112 6.1: "ought to be handled as an
  error"; h11 takes it);
* Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1: MUST treat the framing as faulty);
* a bare LF as line terminator (RFC 9112 2.2 allows a recipient to accept it; we wait for CRLF);
* a Content-Length that is a list, even of equal values (RFC 9112 6.3 allows refusing it).
"""

from __future__ import annotations

import re

import h11
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shirushi.responder.http1 import HTTPError, parse_head

MAX_HEAD = 8192
MAX_TARGET = 4096

methods = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"M-SEARCH", b"G(T", b"", b"get"])
targets = st.one_of(
    st.sampled_from([b"/", b"//MEIw", b"/MEIw%2B%2F%3D", b"*", b"http://ocsp.example//MEIw", b"relative", b""]),
    st.binary(min_size=1, max_size=24).map(lambda b: b"/" + b),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1"])
names = st.sampled_from(
    [b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"If-None-Match", b"Expect",
     b"User-Agent", b"X A", b"X\x00", b"", b"Host "]
)  # fmt: skip
values = st.one_of(
    st.sampled_from([b" x", b"", b" 5", b" 0", b" 5, 5", b" +5", b" chunked", b" gzip, chunked", b" close",
                     b" keep-alive", b" 100-continue", b"\tq\t", b" \xe2\x9c\x93", b" a\rb", b" a\x00", b" a\x7f"]),
    st.binary(max_size=8),
)  # fmt: skip
fields = st.lists(st.tuples(names, values), max_size=5)
line_ends = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])


def build(method: bytes, target: bytes, version: bytes, fields: list[tuple[bytes, bytes]], eol: bytes) -> bytes:
    lines = [method + b" " + target + b" " + version] + [name + b":" + value for name, value in fields]
    return eol.join(lines) + eol + eol


def ours(data: bytes) -> tuple[bytes, bytes, bool, int, bool] | None:
    try:
        head = parse_head(data, 0, MAX_HEAD, MAX_TARGET)
    except HTTPError:
        return None
    if head is None:
        # Still waiting for CRLF CRLF: a head ended by bare LFs never completes (408 later).
        assert b"\n" in data.replace(b"\r\n", b""), f"a complete head must be answered: {data!r}"
        return None
    return head.method, head.target, head.http10, head.content_length, head.chunked


def reference(data: bytes) -> tuple[bytes, bytes, bool, int, bool] | None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None  # NEED_DATA: h11 saw no complete head where one is
    length = 0
    chunked = False
    for name, value in event.headers:
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return event.method, event.target, event.http_version == b"1.0", length, chunked


def deliberately_stricter(data: bytes) -> bool:
    """One of the framing rules in the module docstring applies to `data`."""
    head, _, _ = data.partition(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0]
    _, target, version = request_line.split(b" ", 2)
    fields = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
    names = {name.lower() for name, _, _ in fields}
    lengths = [value for name, _, value in fields if name.lower() == b"content-length"]
    return (
        b"\n" in data.replace(b"\r\n", b"")
        or version not in (b"HTTP/1.0", b"HTTP/1.1")
        or not (target.startswith(b"/") or target == b"*" or re.match(rb"(?i)https?://", target))
        or {b"content-length", b"transfer-encoding"} <= names
        or (version == b"HTTP/1.0" and b"transfer-encoding" in names)
        or any(b"," in value for value in lengths)
    )


def origin_form(target: bytes) -> bytes:
    match = re.match(rb"(?i)https?://[^/]*", target)
    if match is None:
        return target
    return target[match.end() :] or b"/"


@settings(max_examples=3000, deadline=None)
@given(methods, targets, versions, fields, line_ends)
@example(b"GET", b"/", b"HTTP/1.1", [], b"\r\n")  # no Host in HTTP/1.1
@example(b"POST", b"/", b"HTTP/1.1", [(b"Host", b" x"), (b"Content-Length", b" 5"), (b"X", b" a\rb")], b"\r\n")
def test_accepts_and_refuses_what_h11_does(
    method: bytes, target: bytes, version: bytes, fields: list[tuple[bytes, bytes]], eol: bytes
) -> None:
    data = build(method, target, version, fields, eol)
    mine, theirs = ours(data), reference(data)
    if mine is None and theirs is not None:
        assert deliberately_stricter(data), f"refused what h11 accepts: {data!r}"
        return
    assert (mine is None) == (theirs is None), f"accepted what h11 refuses: {data!r}"
    if mine is not None and theirs is not None:
        method_, target_, http10, length, chunked = theirs
        assert mine == (method_, origin_form(target_), http10, length, chunked), data
