"""DER building blocks (X.690): tag-length-value, INTEGER, Extension, Time, and a TLV reader. Pure.

Single-octet tags only, which is all that certificates, CRLs and OCSP use. `read_tlv` trusts
its input to be well formed (DER from pyca/cryptography or from our own encoders);
`read_tlv_within` checks every length against its bounds.
"""

from __future__ import annotations

import datetime as dt


def header(tag: int, length: int) -> bytes:
    """Tag and definite length octets of an element with `length` content octets."""
    if length < 0x80:
        return bytes((tag, length))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return header(tag, len(content)) + content


def integer(value: int) -> bytes:
    """DER INTEGER of a non-negative int (minimal two's complement)."""
    return tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def extension(oid_der: bytes, value_der: bytes) -> bytes:
    """A non-critical Extension: the DEFAULT FALSE critical flag is omitted in DER."""
    return tlv(0x30, oid_der + tlv(0x04, value_der))


def read_tlv(data: bytes | bytearray, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    start = pos + 2 + count
    return tag, start, start + int.from_bytes(data[pos + 2 : start], "big")


def read_tlv_within(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at `pos`, which must end by `end`: a reader
    for DER read back from files or storage (ValueError when it is cut short or malformed)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("bad length")
        start = pos + 2 + count
        length = int.from_bytes(data[pos + 2 : start], "big")
    if start + length > end:
        raise ValueError("truncated")
    return tag, start, start + length


class _SecondsOfDay(dict[int, bytes]):
    """ "HHMMSSZ" of each second of a day, made on first use: the table of all 86,400 cost
    0.2 s at import, paid by every CLI command that encodes a CRL of one entry."""

    def __missing__(self, second: int) -> bytes:
        if not 0 <= second < 86400:
            raise IndexError(second)
        value = self[second] = f"{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}Z".encode()
        return value


SECONDS_OF_DAY = _SecondsOfDay()


def day_prefix(t: dt.datetime) -> bytes:
    """Tag, length and date part of a Time; the `HHMMSSZ` rest comes from `SECONDS_OF_DAY`.

    UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5, 5.1.2.4).
    """
    if 1950 <= t.year < 2050:
        return f"\x17\x0d{t.year % 100:02d}{t.month:02d}{t.day:02d}".encode()
    return f"\x18\x0f{t.year:04d}{t.month:02d}{t.day:02d}".encode()


def time(t: dt.datetime) -> bytes:
    """DER Time of `t`, read as UTC wall-clock time in whole seconds (the caller converts)."""
    return day_prefix(t) + SECONDS_OF_DAY[t.hour * 3600 + t.minute * 60 + t.second]
