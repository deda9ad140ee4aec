"""The live-signing protocol between responders and the backend. Pure: bytes in, bytes out.

A responder that finds no record in Redis asks the backend's live-signing service (over a unix
socket, `presign/live_service.py`) to sign that one response now. Both directions are frames:

    frame   = length (4 bytes, big-endian) || payload
    request = id (4 bytes) || Redis key of the missing record (records.response_key, ASCII)
    reply   = id (4 bytes) || status (1 byte) || packed record (status OK only)

The key is the whole question: the service parses it strictly (`parse_key`) and signs only for a
serial its store knows, so a hostile or broken peer can at most make it look a serial up. Sizes
are bounded both ways, so a peer cannot make either side buffer without limit.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Final

from shirushi.cache import records

OK: Final = 0  # the record follows: signed now, or found already in Redis
UNKNOWN: Final = 1  # no such unexpired certificate: never issued, expired or purged
TRY_LATER: Final = 2  # over the signing budget, or the signer or Redis failed
NOT_MINE: Final = 3  # a key this service does not sign for (another issuer, a malformed key)
STATUSES: Final = frozenset((OK, UNKNOWN, TRY_LATER, NOT_MINE))

MAX_REQUEST: Final = 4 + 256  # id + the longest key we send (prefix, issuer id, alg, 20-octet serial)
MAX_REPLY: Final = 4 + 1 + 16384  # a response is about 1.5 KB; room for a long signer chain

_LENGTH = struct.Struct(">I")
_ID = struct.Struct(">I")
_REPLY_HEAD = struct.Struct(">IB")

# The issuer id is asn1.keys.issuer_id (16 hex digits). RFC 5280 4.1.2.2: a serial is positive
# and at most 20 octets (40 hex digits), written as records.response_key writes it (lowercase
# hex, no leading zeros).
_KEY = re.compile(rb"\{([0-9a-f]{16}):([1-9a-f][0-9a-f]{0,39})\}:(sha1|sha256)")


class ProtocolError(Exception):
    """A frame the peer should never send: the connection is closed."""


def frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def request(request_id: int, key: bytes) -> bytes:
    return frame(_ID.pack(request_id) + key)


def reply(request_id: int, status: int, record: bytes = b"") -> bytes:
    return frame(_REPLY_HEAD.pack(request_id, status) + record)


def parse_request(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < _ID.size:
        raise ProtocolError("short request")
    return _ID.unpack_from(payload)[0], payload[_ID.size :]


def parse_reply(payload: bytes) -> tuple[int, int, bytes]:
    if len(payload) < _REPLY_HEAD.size:
        raise ProtocolError("short reply")
    request_id, status = _REPLY_HEAD.unpack_from(payload)
    if status not in STATUSES:
        raise ProtocolError(f"unknown status {status}")
    return request_id, status, payload[_REPLY_HEAD.size :]


def parse_key(key: bytes) -> tuple[str, str, int] | None:
    """A Redis response key -> (issuer id, CertID hash algorithm, serial); None if malformed."""
    prefix = records.PREFIX.encode()
    if not key.startswith(prefix):
        return None
    match = _KEY.fullmatch(key, len(prefix))
    if match is None:
        return None
    issuer, serial, alg = match.groups()
    return issuer.decode(), alg.decode(), int(serial, 16)


class Decoder:
    """Splits a byte stream into payloads; ProtocolError on a frame larger than `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buffer += data
        while len(self.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length > self.limit:
                raise ProtocolError(f"frame of {length} bytes exceeds {self.limit}")
            end = _LENGTH.size + length
            if len(self.buffer) < end:
                return
            payload = bytes(self.buffer[_LENGTH.size : end])
            del self.buffer[:end]
            yield payload
