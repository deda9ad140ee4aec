"""The CRL archive's tables (policy 5.5.1, crl/archive.py): each archived CRL's row and manifest,
the compressed chunks each scope holds and until when they are needed. Does database I/O.

In the system of record rather than in files: a CRL, its new chunks and their uses are one
transaction (one commit, where thousands of new chunk files would each need an fsync), the
archive is backed up and replicated with the rest of the records, and every backend of a
PostgreSQL deployment sees the same archive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shirushi.errors import ConflictError, ServiceError
from shirushi.store import schema
from shirushi.store.database import CHUNK
from shirushi.store.records import utc


class ArchiveConflictError(ConflictError):
    """The archive already holds a different CRL under this scope and number (RFC 5280 5.2.3)."""


@dataclasses.dataclass(frozen=True)
class ArchiveRow:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    sha256: str
    size: int
    stored: int


_A = schema.crl_archive
# Everything but the manifest, which is read only to rebuild a CRL.
ROW = (_A.c.number, _A.c.this_update, _A.c.next_update, _A.c.sha256, _A.c.size, _A.c.stored)


def _row(r: Any) -> ArchiveRow:
    m = r._mapping
    return ArchiveRow(
        int(m["number"]),
        utc(m["this_update"]),
        utc(m["next_update"]),
        str(m["sha256"]),
        int(m["size"]),
        int(m["stored"]),
    )


class ArchiveIndex:
    """The archive rows of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def missing_chunks(self, issuer_id: str, shard: int, digests: Sequence[str]) -> set[str]:
        """Those of `digests` the scope does not hold yet."""
        c = schema.crl_archive_chunks
        have: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(digests), CHUNK):
                scope = (c.c.issuer_id == issuer_id, c.c.shard == shard, c.c.sha256.in_(digests[i : i + CHUNK]))
                have.update(conn.execute(sa.select(c.c.sha256).where(*scope)).scalars())
        return set(digests) - have

    def record(
        self,
        issuer_id: str,
        shard: int,
        row: ArchiveRow,
        manifest: bytes,
        *,
        uses: Sequence[str],
        new_chunks: dict[str, bytes],
        at: dt.datetime,
    ) -> bool:
        """Store one CRL's row and manifest, the chunks of `new_chunks` (digest -> compressed
        data) the scope lacks, and the CRL's use of every chunk in `uses`, in one transaction.
        False when the same CRL was archived before (a retry). Raises `ArchiveConflictError`
        when another CRL holds this number."""
        a = schema.crl_archive
        for _attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    existing = conn.execute(
                        sa.select(a.c.sha256).where(
                            a.c.issuer_id == issuer_id, a.c.shard == shard, a.c.number == row.number
                        )
                    ).scalar_one_or_none()
                    if existing is not None:
                        if existing != row.sha256:
                            raise ArchiveConflictError(
                                f"the archive holds a different CRL with number {row.number} (shard {shard})"
                            )
                        _use_chunks(conn, issuer_id, shard, uses, new_chunks, row.next_update)
                        return False
                    conn.execute(
                        a.insert().values(
                            issuer_id=issuer_id,
                            shard=shard,
                            number=row.number,
                            this_update=utc(row.this_update),
                            next_update=utc(row.next_update),
                            sha256=row.sha256,
                            size=row.size,
                            stored=row.stored,
                            manifest=manifest,
                            archived_at=utc(at),
                        )
                    )
                    _use_chunks(conn, issuer_id, shard, uses, new_chunks, row.next_update)
                    return True
            except sa.exc.IntegrityError:
                continue  # another process indexed a chunk or this number meanwhile: look again
        raise ServiceError("could not index the archived CRL: too much contention")

    def rows(self, issuer_id: str, shard: int) -> list[ArchiveRow]:
        """Every archived CRL of the scope, by number."""
        a = schema.crl_archive
        query = sa.select(*ROW).where(a.c.issuer_id == issuer_id, a.c.shard == shard).order_by(a.c.number)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def manifest(self, issuer_id: str, shard: int, number: int) -> bytes | None:
        """The stored (compressed) manifest of that CRL; None when it is not archived."""
        a = schema.crl_archive
        query = sa.select(a.c.manifest).where(a.c.issuer_id == issuer_id, a.c.shard == shard, a.c.number == number)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return None if value is None else bytes(value)

    def chunks(self, issuer_id: str, shard: int, digests: Sequence[str]) -> dict[str, bytes]:
        """The stored (compressed) data of those chunks the scope holds."""
        c = schema.crl_archive_chunks
        out: dict[str, bytes] = {}
        unique = sorted(set(digests))
        with self.engine.connect() as conn:
            for i in range(0, len(unique), CHUNK):
                scope = (c.c.issuer_id == issuer_id, c.c.shard == shard, c.c.sha256.in_(unique[i : i + CHUNK]))
                for r in conn.execute(sa.select(c.c.sha256, c.c.data).where(*scope)):
                    out[str(r.sha256)] = bytes(r.data)
        return out

    def candidates(self, issuer_id: str, shard: int, cutoff: dt.datetime) -> list[ArchiveRow]:
        """The scope's CRLs whose nextUpdate is before `cutoff`, and its newest CRL."""
        a = schema.crl_archive
        scope = (a.c.issuer_id == issuer_id, a.c.shard == shard)
        newest = sa.select(sa.func.max(a.c.number)).where(*scope).scalar_subquery()
        query = sa.select(*ROW).where(*scope, sa.or_(a.c.next_update < utc(cutoff), a.c.number == newest))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def forget_crls(self, issuer_id: str, shard: int, numbers: Sequence[int]) -> None:
        a = schema.crl_archive
        with self.engine.begin() as conn:
            for i in range(0, len(numbers), CHUNK):
                conn.execute(
                    a.delete().where(
                        a.c.issuer_id == issuer_id, a.c.shard == shard, a.c.number.in_(numbers[i : i + CHUNK])
                    )
                )

    def unused_chunks(self, issuer_id: str, shard: int, cutoff: dt.datetime) -> list[tuple[str, int]]:
        """(digest, stored octets) of the scope's chunks no CRL used after `cutoff`."""
        c = schema.crl_archive_chunks
        query = sa.select(c.c.sha256, c.c.stored).where(
            c.c.issuer_id == issuer_id, c.c.shard == shard, c.c.last_used < utc(cutoff)
        )
        with self.engine.connect() as conn:
            return [(str(r.sha256), int(r.stored)) for r in conn.execute(query)]

    def forget_chunks(self, issuer_id: str, shard: int, digests: Sequence[str]) -> None:
        c = schema.crl_archive_chunks
        with self.engine.begin() as conn:
            for i in range(0, len(digests), CHUNK):
                conn.execute(
                    c.delete().where(
                        c.c.issuer_id == issuer_id, c.c.shard == shard, c.c.sha256.in_(digests[i : i + CHUNK])
                    )
                )

    def totals(self, issuer_id: str | None = None) -> tuple[int, int]:
        """(CRLs archived, octets of their manifests and chunks): what the archive holds."""
        a, c = schema.crl_archive, schema.crl_archive_chunks
        crls = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(a.c.manifest)), 0))
        chunks = sa.select(sa.func.coalesce(sa.func.sum(c.c.stored), 0))
        if issuer_id is not None:
            crls, chunks = crls.where(a.c.issuer_id == issuer_id), chunks.where(c.c.issuer_id == issuer_id)
        with self.engine.connect() as conn:
            count, manifests = conn.execute(crls).one()
            chunk_bytes = conn.execute(chunks).scalar_one()
        return int(count), int(manifests) + int(chunk_bytes)


def _use_chunks(
    conn: Connection,
    issuer_id: str,
    shard: int,
    uses: Sequence[str],
    new_chunks: dict[str, bytes],
    next_update: dt.datetime,
) -> None:
    """Insert the new chunks the scope does not hold yet; move the last use of every chunk in
    `uses` forward to `next_update` (never back: a CRL archived late must not shorten a chunk's
    life). Every chunk used must be there afterwards."""
    c = schema.crl_archive_chunks
    until = utc(next_update)
    unique = sorted(set(uses))
    for i in range(0, len(unique), CHUNK):
        part = unique[i : i + CHUNK]
        scope = (c.c.issuer_id == issuer_id, c.c.shard == shard, c.c.sha256.in_(part))
        have = set(conn.execute(sa.select(c.c.sha256).where(*scope)).scalars())
        missing = [d for d in part if d not in have]
        if any(d not in new_chunks for d in missing):
            raise ServiceError("an archived CRL uses a chunk the archive no longer holds")
        if missing:
            rows = [
                {
                    "issuer_id": issuer_id,
                    "shard": shard,
                    "sha256": d,
                    "stored": len(new_chunks[d]),
                    "data": new_chunks[d],
                    "last_used": until,
                }
                for d in missing
            ]
            conn.execute(c.insert(), rows)
        if have:
            conn.execute(c.update().where(*scope, c.c.last_used < until).values(last_used=until))
