"""The CRL archive (policy 5.5.1: every CRL issued is kept; 5.5.2: for the configured years).

Every CRL is archived, compressed and content-addressed (`archive_format.py`), in the database
(`store/crl_archive.py`) before it goes live, so nothing is ever published that is not
archived. Archiving the same CRL again is a harmless retry; a different CRL under an archived
number is refused (RFC 5280 5.2.3: two CRLs of one scope never share a number).

`prune` applies `crl.archive_retention_years` as a function of `now` alone; the caller holds the
scope's generation lock (`CRLService`), so no CRL of that scope is being archived meanwhile.
CRLs archived as files before the content-addressed archive existed
(`archive/crl/NAME/NUMBER.crl`) are moved in by `import_legacy`. Does database and file I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import zlib
from pathlib import Path

from shirushi.clock import years_before
from shirushi.crl.archive_format import (
    Archived,
    Pieces,
    cut,
    digest,
    join,
    manifest,
    prunable,
    read_manifest,
)
from shirushi.errors import InputError, ServiceError
from shirushi.store.crl_archive import ArchiveIndex, ArchiveRow

log = logging.getLogger("shirushi.crl")

# Level 6: within a few percent of 9 on CRL entries (their serials are random) at half the time.
LEVEL = 6
# A stored chunk larger than this cannot be ours (CHUNK_ENTRIES entries of at most ~60 octets,
# or a long run without a boundary); refuse rather than inflate it (input sizes bounded).
MAX_INFLATED = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Archiving:
    """What archiving one CRL did."""

    sha256: str
    size: int  # octets of the DER
    stored: int  # octets it added to the archive (manifest and new chunks, compressed)
    chunks: int
    new_chunks: int
    again: bool  # the same CRL was archived before


@dataclasses.dataclass(frozen=True)
class Pruned:
    crls: int
    chunks: int
    chunk_octets: int  # stored octets of the chunks dropped


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_INFLATED)
    if inflater.unconsumed_tail:
        raise InputError("archived CRL piece too large")
    return out


class CrlArchive:
    """The archived CRLs of one database, by scope (issuer id, shard)."""

    def __init__(self, index: ArchiveIndex) -> None:
        self.index = index

    def put(
        self,
        issuer_id: str,
        shard: int,
        der: bytes,
        *,
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
        at: dt.datetime,
    ) -> Archiving:
        """Archive `der` (the scope's CRL `number`); durable when this returns."""
        pieces: Pieces = cut(der)
        digests = pieces.chunk_digests
        missing = self.index.missing_chunks(issuer_id, shard, list(digests))
        new = {d: zlib.compress(c, LEVEL) for d, c in zip(digests, pieces.chunks, strict=True) if d in missing}
        stored_manifest = zlib.compress(manifest(pieces), LEVEL)
        stored = len(stored_manifest) + sum(len(v) for v in new.values())
        row = ArchiveRow(number, this_update, next_update, pieces.sha256, len(der), stored)
        first = self.index.record(issuer_id, shard, row, stored_manifest, uses=digests, new_chunks=new, at=at)
        return Archiving(pieces.sha256, len(der), stored if first else 0, len(digests), len(new), not first)

    def numbers(self, issuer_id: str, shard: int) -> list[int]:
        return [r.number for r in self.index.rows(issuer_id, shard)]

    def load(self, issuer_id: str, shard: int, number: int) -> bytes:
        """The DER of the scope's archived CRL `number`, byte for byte (its digest checked)."""
        stored = self.index.manifest(issuer_id, shard, number)
        if stored is None:
            raise InputError(f"CRL number {number} (shard {shard}) is not in the archive")
        m = read_manifest(_inflate(stored))
        found = self.index.chunks(issuer_id, shard, m.chunks)
        if any(d not in found for d in m.chunks):
            raise ServiceError(f"archived CRL {number} (shard {shard}) lost a chunk")
        chunks = [_inflate(found[d]) for d in m.chunks]
        for d, c in zip(m.chunks, chunks, strict=True):
            if digest(c) != d:
                raise ServiceError(f"archived CRL {number} (shard {shard}) has a damaged chunk")
        return join(m, chunks)

    def prune(self, issuer_id: str, shard: int, *, now: dt.datetime, years: int) -> Pruned:
        """Drop what retention allows at `now` (`archive_format.prunable`): the CRLs, then the
        chunks no remaining CRL uses (a chunk used last before the cutoff is needed only by
        pruned CRLs, or by the scope's newest CRL, kept whatever its age)."""
        cutoff = years_before(now, years)
        rows = self.index.candidates(issuer_id, shard, cutoff)
        gone = prunable((Archived(r.number, r.next_update, r.sha256) for r in rows), now=now, years=years)
        if gone:
            self.index.forget_crls(issuer_id, shard, [c.number for c in gone])
        old_chunks = self.index.unused_chunks(issuer_id, shard, cutoff)
        if not gone and not old_chunks:
            return Pruned(0, 0, 0)
        keep: set[str] = set()
        dropped = {c.number for c in gone}
        kept = [r for r in rows if r.number not in dropped and r.next_update < cutoff]
        for r in kept:  # at most the newest CRL: every other CRL this old was just pruned
            stored = self.index.manifest(issuer_id, shard, r.number)
            if stored is not None:
                keep.update(read_manifest(_inflate(stored)).chunks)
        drop = [(d, size) for d, size in old_chunks if d not in keep]
        self.index.forget_chunks(issuer_id, shard, [d for d, _ in drop])
        result = Pruned(len(gone), len(drop), sum(size for _, size in drop))
        log.info(
            "crl archive pruned",
            extra={"issuer_id": issuer_id, "shard": shard, "crls": result.crls, "chunks": result.chunks},
        )
        return result

    def import_legacy(self, issuer_id: str, shard: int, directory: Path, *, at: dt.datetime) -> int:
        """Move CRLs archived as files (`directory/NUMBER.crl`) into the archive; each file is
        removed only once its CRL is archived (a crash part-way repeats the rest next time).
        Returns how many were moved."""
        try:
            files = sorted((p for p in directory.glob("*.crl") if p.stem.isdigit()), key=lambda p: int(p.stem))
        except FileNotFoundError:
            return 0
        from cryptography import x509

        from shirushi.crl.publish import crl_number

        for path in files:
            der = path.read_bytes()
            number = crl_number(der)
            if number != int(path.stem):
                raise ServiceError(f"{path} holds CRL number {number}")
            crl = x509.load_der_x509_crl(der)
            next_update = crl.next_update_utc or crl.last_update_utc
            self.put(
                issuer_id, shard, der, number=number, this_update=crl.last_update_utc, next_update=next_update, at=at
            )
            os.unlink(path)
        if files:
            log.info("crl archive imported", extra={"directory": str(directory), "crls": len(files)})
        return len(files)
