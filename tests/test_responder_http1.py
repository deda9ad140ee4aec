"""The bounded HTTP/1.x request parser (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shirushi.responder.http1 import HTTPError, decode_chunked, parse_head

MAX_HEAD, MAX_TARGET = 8192 + 1024, 1024


def head(data: bytes):  # type: ignore[no-untyped-def]
    return parse_head(data, 0, MAX_HEAD, MAX_TARGET)


def refused(data: bytes) -> int:
    with pytest.raises(HTTPError) as info:
        head(data)
    return info.value.code


def test_simple_get() -> None:
    h = head(b"GET /MEIw HTTP/1.1\r\nHost: ocsp.example\r\n\r\n")
    assert h is not None
    assert (h.method, h.target, h.http10, h.keep_alive, h.content_length) == (b"GET", b"/MEIw", False, True, 0)
    assert h.end == len(b"GET /MEIw HTTP/1.1\r\nHost: ocsp.example\r\n\r\n")


def test_incomplete_returns_none() -> None:
    assert head(b"GET /MEIw HTTP/1.1\r\nHost: x\r\n") is None
    assert head(b"") is None


def test_http10_closes_unless_keep_alive() -> None:
    h10 = head(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n")
    assert h10 is not None and h10.http10 and not h10.keep_alive and h10.content_length == 3
    h10k = head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert h10k is not None and h10k.keep_alive


def test_connection_close_and_if_none_match() -> None:
    h = head(
        b'GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\nIf-None-Match: "a"\r\nIf-None-Match: W/"b"\r\n\r\n'
    )
    assert h is not None and not h.keep_alive and h.if_none_match == b'"a",W/"b"'


def test_leading_empty_lines_and_absolute_form() -> None:
    h = head(b"\r\n\r\nGET http://ocsp.example:8080//MEIw HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h is not None and h.target == b"//MEIw"
    h2 = head(b"GET http://ocsp.example HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h2 is not None and h2.target == b"/"


def test_expect_continue() -> None:
    h = head(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
    assert h is not None and h.expect_continue


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /" + b"A" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /" + b"A" * (MAX_HEAD + 10), 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: y\r\n" * 2000, 431),
        # RFC 9112 3.2: exactly one Host in HTTP/1.1.
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        # RFC 9110 5.5: CR, LF and NUL in a value (a proxy may split on a bare CR or LF).
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rContent-Length: 5\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\nContent-Length: 5\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00\r\n\r\n", 400),
        # RFC 9110 5.1: a field name is a token.
        (b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 400),
    ],
)
def test_refusals(data: bytes, code: int) -> None:
    assert refused(data) == code


def test_http10_needs_no_host_and_values_may_hold_tabs_and_obs_text() -> None:
    h = head(b"GET /MEIw HTTP/1.0\r\nUser-Agent: a\tb \xe2\x9c\x93\r\n\r\n")
    assert h is not None and h.http10 and h.target == b"/MEIw"


def test_duplicate_equal_content_length_is_fine() -> None:
    h = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n")
    assert h is not None and h.content_length == 5


def test_chunked() -> None:
    h = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n")
    assert h is not None and h.chunked
    body = b"4;ext=1\r\nMEIw\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    assert decode_chunked(body, 0, 100) == (b"MEIwabc", len(body) - 4)
    assert decode_chunked(body[:10], 0, 100) is None
    assert decode_chunked(body[:-6], 0, 100) is None
    with pytest.raises(HTTPError) as info:
        decode_chunked(body, 0, 5)
    assert info.value.code == 413
    for bad in (b"zz\r\nab\r\n0\r\n\r\n", b"2\r\nabc\r\n0\r\n\r\n", b"1" * 300):
        with pytest.raises(HTTPError):
            decode_chunked(bad, 0, 100)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.0\r\n"]))
def test_parser_only_raises_http_errors(data: bytes, prefix: bytes) -> None:
    for attempt in (prefix + data, prefix + data + b"\r\n\r\n"):
        try:
            h = parse_head(attempt, 0, 512, 256)
            if h is not None:
                assert h.end <= len(attempt)
                assert h.content_length >= 0
        except HTTPError as exc:
            assert 400 <= exc.code < 500
        try:
            decoded = decode_chunked(attempt, 0, 256)
            if decoded is not None:
                assert len(decoded[0]) <= 256
        except HTTPError as exc:
            assert 400 <= exc.code < 500
