"""Key scheme and record format of presigned OCSP responses in Redis. Pure: no I/O.

Keys (all under one prefix so a Redis shared with other software stays tidy; ISSUER, ALG and
SERIAL stand for values, the braces are literal):

    shirushi:ocsp:{ISSUER:SERIAL}:ALG   one record: header + DER OCSPResponse
    shirushi:ocsp:{ISSUER}:complete     set when a full load for that issuer has finished
    shirushi:ocsp:invalidate            pub/sub channel: a key whose record just changed
    shirushi:ocsp:issuers               hash: outside CA name -> its PEM certificate

ISSUER is `shirushi.asn1.keys.issuer_id()` of the issuing CA's public key; ALG is "sha1" or
"sha256" (the CertID hash algorithm the response echoes, RFC 9919 3.2.1); SERIAL is lowercase
hex without leading zeros. A record's TTL is nextUpdate - now, so an unrefreshed response vanishes
instead of going stale.

The braces are Redis Cluster hash tags (only the part inside them picks the slot): both records
of one certificate, the SHA-1 and the SHA-256 CertID, share a slot, so the writes of one status
change land on one node, and a responder computes the slot from the request alone (issuer from
the CertID's hashes, serial from the CertID). On a single server the braces change nothing.
Layout 3 (this one) replaced `shirushi:ocsp:ISSUER:ALG:SERIAL` and `shirushi:ocsp:ISSUER:complete`;
the new `complete` name makes the presigner do a full load into the new keys after an upgrade,
and the old records expire with their TTL (docs/deploy.md, "Redis Cluster").

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
    return f"{PREFIX}{{{issuer}:{serial:x}}}:{alg}"


def response_key_parts(issuer: str, alg: str) -> tuple[bytes, bytes]:
    """(before, after) the serial in `response_key`: the responder inserts only the serial."""
    before, after = response_key(issuer, alg, 0).split("0}", 1)
    return before.encode(), b"}" + after.encode()


def complete_key(issuer: str) -> str:
    return f"{PREFIX}{{{issuer}}}:complete"


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


Fields = tuple[bytes, int, int, int, bytes, int]  # Record's fields, in its order


def unpack_fields(value: bytes) -> Fields | None:
    """`unpack` without building the Record (the responder's path from a Redis reply)."""
    if len(value) <= HEADER_SIZE:
        return None
    version, status_version, this_update, next_update, refresh_by, digest = _HEADER.unpack_from(value)
    if version != _VERSION:
        return None
    return value[HEADER_SIZE:], this_update, next_update, refresh_by, digest, status_version


def unpack(value: bytes) -> Record | None:
    """Decode a stored record; None for anything that is not a well-formed record."""
    fields = unpack_fields(value)
    return None if fields is None else Record(*fields)
