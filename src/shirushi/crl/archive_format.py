"""How an archived CRL is cut into content-addressed pieces, and which pieces retention drops. Pure.

Policy 5.5.1 keeps every CRL ever published; a CA with a million revoked entries publishes tens
of megabytes of CRL per scheduled run, and nearly all of it repeats the previous CRL of the same
shard. So a CRL is archived as pieces, each stored once under the SHA-256 of its bytes:

- the *frame*: the DER with the revokedCertificates content cut out (headers, issuer, times,
  extensions, signature; under 2 KB), kept in the CRL's manifest;
- the *chunks*: the revokedCertificates content split at entry boundaries chosen by the entries
  themselves (content-defined chunking: a boundary follows every entry whose CRC-32 is 0 modulo
  `CHUNK_ENTRIES`). A new revocation or a dropped expired entry changes only the chunk it falls
  in; an unchanged shard re-signed on schedule shares every chunk with its previous CRL.

The manifest (frame, cut position, chunk digests) is itself stored under the SHA-256 of the
CRL's DER, so the same DER is one object however often it is archived, and the DER comes back
byte for byte (`join` checks the digest).

Retention (policy 5.5.2, `crl.archive_retention_years`): a CRL may be pruned once its
nextUpdate is more than that many years before `now` (it was relied on until its nextUpdate),
except the newest CRL of each scope, which is kept whatever its age.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence

from shirushi.asn1.der import read_tlv_within as _tlv
from shirushi.clock import years_before
from shirushi.errors import InputError

# Entries per chunk on average. Smaller chunks share more between CRLs but make the manifest
# longer (32 octets a chunk): at ~45 octets an entry, 128 entries make ~5.8 KB chunks, and a
# 15,000-entry shard a 3.8 KB digest list.
CHUNK_ENTRIES = 128
# Refuse manifests that could not come from a CRL of ours (input sizes bounded).
MAX_MANIFEST = 64 * 1024 * 1024
MANIFEST_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Pieces:
    """A CRL cut for the archive: `frame[:cut] + b"".join(chunks) + frame[cut:]` is the DER."""

    sha256: str  # of the DER: the CRL's key in the archive
    frame: bytes
    cut: int
    chunks: tuple[bytes, ...]

    @property
    def chunk_digests(self) -> tuple[str, ...]:
        return tuple(digest(c) for c in self.chunks)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entries_span(der: bytes) -> tuple[int, int]:
    """(start, end) of the revokedCertificates content; an empty span when there is none."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != 0x30 or end != len(der):
        raise ValueError("not a SEQUENCE")
    tag, pos, tbs_end = _tlv(der, start, end)
    if tag != 0x30:
        raise ValueError("no TBSCertList")
    seen_time = False
    while pos < tbs_end:
        tag, content, next_pos = _tlv(der, pos, tbs_end)
        if tag in (0x17, 0x18):  # thisUpdate, nextUpdate (RFC 5280 5.1.2.4-5)
            seen_time = True
        elif tag == 0x30 and seen_time:  # revokedCertificates (5.1.2.6)
            return content, next_pos
        elif tag == 0xA0:  # crlExtensions: no entries
            return pos, pos
        pos = next_pos
    return tbs_end, tbs_end


def cut(der: bytes) -> Pieces:
    """The archive pieces of a DER CRL (`InputError` when it is not one)."""
    try:
        start, end = _entries_span(der)
        chunks: list[bytes] = []
        first = pos = start
        while pos < end:
            _, _, next_pos = _tlv(der, pos, end)
            if zlib.crc32(der[pos:next_pos]) % CHUNK_ENTRIES == 0:
                chunks.append(der[first:next_pos])
                first = next_pos
            pos = next_pos
    except (IndexError, ValueError) as exc:
        raise InputError(f"not a DER CRL: {exc}") from None
    if first < end:
        chunks.append(der[first:end])
    return Pieces(digest(der), der[:start] + der[end:], start, tuple(chunks))


def manifest(pieces: Pieces) -> bytes:
    """The manifest object of a CRL: JSON, readable by an auditor without this code."""
    document = {
        "version": MANIFEST_VERSION,
        "sha256": pieces.sha256,
        "frame": base64.b64encode(pieces.frame).decode(),
        "cut": pieces.cut,
        "chunks": list(pieces.chunk_digests),
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class Manifest:
    sha256: str
    frame: bytes
    cut: int
    chunks: tuple[str, ...]


def read_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST:
        raise InputError("archived CRL manifest too large")
    try:
        document = json.loads(data)
        if document["version"] != MANIFEST_VERSION:
            raise ValueError(f"version {document['version']}")
        frame = base64.b64decode(document["frame"], validate=True)
        chunks = tuple(str(c) for c in document["chunks"])
        cut_at = int(document["cut"])
        if not 0 <= cut_at <= len(frame):
            raise ValueError("cut outside the frame")
        return Manifest(str(document["sha256"]), frame, cut_at, chunks)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not an archived CRL manifest: {exc}") from None


def join(m: Manifest, chunks: Sequence[bytes]) -> bytes:
    """The DER again; `InputError` when the pieces do not hash to the manifest's key."""
    der = m.frame[: m.cut] + b"".join(chunks) + m.frame[m.cut :]
    if digest(der) != m.sha256:
        raise InputError(f"archived CRL {m.sha256} does not match its digest")
    return der


@dataclasses.dataclass(frozen=True)
class Archived:
    """One archived CRL as its index row says (`store/crl_archive.py`)."""

    number: int
    next_update: dt.datetime
    sha256: str


def prunable(crls: Iterable[Archived], *, now: dt.datetime, years: int) -> list[Archived]:
    """The CRLs of one scope that retention drops at `now`: nextUpdate before the cutoff,
    never the newest (highest number) of the scope."""
    ordered = sorted(crls, key=lambda c: c.number)
    cutoff = years_before(now, years)
    return [c for c in ordered[:-1] if c.next_update < cutoff]
