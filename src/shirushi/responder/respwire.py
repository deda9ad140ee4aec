"""RESP2, the Redis wire protocol: encoding commands and parsing replies. Pure (bytes in, values out).

Only what the responder's client needs: bulk, simple, error, integer and array replies, and
commands as arrays of bulk strings. A reply line longer than `MAX_LINE` or a malformed length is
a `ProtocolError`; the connection that read it is dropped.
"""

from __future__ import annotations

from typing import Any, Final


class RespError:
    """An error reply from Redis (`-ERR ...`)."""

    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


class _Failed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = _Failed()
Reply = Any  # bytes | int | None | RespError | list[Reply] | FAILED

MAX_LINE: Final = 1 << 16


class ProtocolError(Exception):
    """Bytes from Redis that are not RESP2."""


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Reply, int] | None:
    """One RESP2 reply at `buf[pos:]` -> (value, next offset); None while incomplete."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        if len(buf) - pos > MAX_LINE:
            raise ProtocolError("reply line too long")
        return None
    kind = buf[pos]
    try:
        if kind == 0x24:  # '$' bulk string
            size = int(buf[pos + 1 : eol])
            if size < 0:
                return None, eol + 2
            end = eol + 2 + size
            if len(buf) < end + 2:
                return None
            return bytes(buf[eol + 2 : end]), end + 2
        if kind == 0x2B:  # '+' simple string
            return bytes(buf[pos + 1 : eol]), eol + 2
        if kind == 0x2D:  # '-' error
            return RespError(bytes(buf[pos + 1 : eol])), eol + 2
        if kind == 0x3A:  # ':' integer
            return int(buf[pos + 1 : eol]), eol + 2
        if kind == 0x2A:  # '*' array
            count = int(buf[pos + 1 : eol])
            if count < 0:
                return None, eol + 2
            items: list[Reply] = []
            pos = eol + 2
            for _ in range(count):
                item = parse_reply(buf, pos)
                if item is None:
                    return None
                items.append(item[0])
                pos = item[1]
            return items, pos
    except ValueError:
        raise ProtocolError("bad length or integer") from None
    raise ProtocolError(f"unknown reply type {kind:#x}")


def command(*args: bytes) -> bytes:
    """RESP2 encoding of one command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)
