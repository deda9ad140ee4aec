"""RESP2 wire format (responder/respwire.py): commands round-trip, replies parse, bad bytes refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shirushi.responder.respwire import MAX_LINE, ProtocolError, RespError, command, parse_reply

args = st.lists(st.binary(max_size=64), min_size=1, max_size=8)


@given(args)
def test_a_command_parses_back_as_the_array_it_encodes(items: list[bytes]) -> None:
    wire = command(*items)
    assert parse_reply(wire, 0) == (items, len(wire))


@given(args, st.integers(min_value=1, max_value=200))
def test_every_proper_prefix_is_incomplete(items: list[bytes], cut: int) -> None:
    wire = command(*items)
    cut = min(cut, len(wire) - 1)
    assert parse_reply(wire[:cut], 0) is None


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b":42\r\n", 42),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"$3\r\nab\n\r\n", b"ab\n"),  # a bulk string may hold CR and LF
        (b"*2\r\n$1\r\na\r\n:7\r\n", [b"a", 7]),
    ],
)
def test_replies(wire: bytes, value: object) -> None:
    assert parse_reply(wire, 0) == (value, len(wire))


def test_an_error_reply_is_a_value() -> None:
    parsed = parse_reply(b"-ERR unknown command\r\n", 0)
    assert parsed is not None
    error, end = parsed
    assert isinstance(error, RespError) and error.message == b"ERR unknown command" and end == 22


def test_replies_follow_each_other_in_one_buffer() -> None:
    buf = b"+OK\r\n:1\r\n"
    first = parse_reply(buf, 0)
    assert first == (b"OK", 5)
    assert parse_reply(buf, first[1]) == (1, len(buf))


@pytest.mark.parametrize("wire", [b"!x\r\n", b"$x\r\n", b":1.5\r\n", b"*z\r\n"])
def test_malformed_replies_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(wire, 0)


def test_an_endless_line_is_refused_before_it_fills_memory() -> None:
    with pytest.raises(ProtocolError):
        parse_reply(b"+" + b"x" * (MAX_LINE + 1), 0)
