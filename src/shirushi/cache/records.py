"""Key scheme and record format of presigned OCSP responses in Redis. Pure: no I/O.

Keys (all under one prefix so a Redis shared with other software stays tidy):

    shirushi:ocsp:{issuer}:{alg}:{serial}   one record: header + DER OCSPResponse
    shirushi:ocsp:{issuer}:complete         set when a full load for that issuer has finished
    shirushi:ocsp:invalidate                pub/sub channel: a key whose record just changed
    shirushi:ocsp:issuers                   hash: outside CA name -> its PEM certificate

`issuer` is `shirushi.asn1.keys.issuer_id()` of the issuing CA's public key; `alg` is "sha1" or
"sha256" (the CertID hash algorithm the response echoes, RFC 9919 3.2.1); `serial` is lowercase
hex without leading zeros. A record's TTL is nextUpdate - now, so an unrefreshed response vanishes
instead of going stale.

A record is `HEADER` followed by the DER. The header holds the certificate's status version (it
goes up with every revocation, so a writer can refuse to replace a newer status with an older
one, see writer.py), and what the responder needs for the HTTP caching headers (RFC 9919 6, 7.2)
so that one GET answers a request: thisUpdate, nextUpdate, the time by which the presigner plans
to have re-signed it, and SHA-256 of the DER for the ETag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

PREFIX = "shirushi:ocsp:"
INVALIDATE_CHANNEL = PREFIX + "invalidate"
# Hash of the outside CAs responders answer for: name -> PEM certificate (responder/reload.py).
ISSUERS_KEY = PREFIX + "issuers"
HASH_ALGORITHMS = ("sha1", "sha256")

_HEADER = struct.Struct(">BQQQQ32s")
_VERSION = 2
HEADER_SIZE = _HEADER.size


def response_key(issuer: str, alg: str, serial: int) -> str:
    return f"{PREFIX}{issuer}:{alg}:{serial:x}"


def complete_key(issuer: str) -> str:
    return f"{PREFIX}{issuer}:complete"


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """A presigned response and the times that govern its HTTP caching (Unix seconds)."""

    der: bytes
    this_update: int
    next_update: int
    refresh_by: int
    sha256: bytes
    status_version: int = 0

    def pack(self) -> bytes:
        header = _HEADER.pack(
            _VERSION, self.status_version, self.this_update, self.next_update, self.refresh_by, self.sha256
        )
        return header + self.der

    @property
    def etag(self) -> str:
        return '"' + self.sha256.hex() + '"'


def make_record(der: bytes, this_update: int, next_update: int, refresh_by: int, status_version: int = 0) -> Record:
    return Record(der, this_update, next_update, refresh_by, hashlib.sha256(der).digest(), status_version)


def unpack(value: bytes) -> Record | None:
    """Decode a stored record; None for anything that is not a well-formed record."""
    if len(value) <= HEADER_SIZE:
        return None
    version, status_version, this_update, next_update, refresh_by, digest = _HEADER.unpack_from(value)
    if version != _VERSION:
        return None
    return Record(value[HEADER_SIZE:], this_update, next_update, refresh_by, digest, status_version)
