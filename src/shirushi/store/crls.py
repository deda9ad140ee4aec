"""CRL numbers and the record of published CRLs (RFC 5280 5.2.3, policy 5.5.1). Does database I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.errors import ServiceError
from shirushi.store import outbox, schema
from shirushi.store.audit import append_audit
from shirushi.store.database import CHUNK
from shirushi.store.records import CRLRow, crl_row, serial_column, utc


class CRLs:
    """The CRLs of one database: numbers reserved, CRLs published."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def allocate_number(
        self,
        issuer_id: str,
        *,
        this_update: dt.datetime,
        next_update: dt.datetime,
        scheduled: bool,
        shard: int = 0,
        reuse_unarchived: bool = False,
    ) -> int:
        """Reserve the next CRL number of this issuer's `shard` (RFC 5280 5.2.3: per CRL scope).

        A number whose CRL was archived is never given again, even across backends: the
        unique (issuer, shard, number) constraint turns a race between two into a retry. With
        `reuse_unarchived`, the highest number is given again when no CRL was archived under it
        (its generation died before archiving, so no CRL with that number was ever published:
        the archive comes first), so a crash leaves no gap in the published numbers. Only for a
        caller holding the scope's generation lock, which no live generation holds meanwhile.
        """
        k, a = schema.crls, schema.crl_archive
        scope = (k.c.issuer_id == issuer_id, k.c.shard == shard)
        for _attempt in range(20):
            try:
                with self.engine.begin() as conn:
                    current = conn.execute(sa.select(sa.func.max(k.c.number)).where(*scope)).scalar_one()
                    if reuse_unarchived and current is not None:
                        archived = conn.execute(
                            sa.select(a.c.id).where(
                                a.c.issuer_id == issuer_id, a.c.shard == shard, a.c.number == current
                            )
                        ).first()
                        if archived is None:
                            reused = conn.execute(
                                k.update()
                                .where(*scope, k.c.number == current, k.c.published_at.is_(None))
                                .values(this_update=utc(this_update), next_update=utc(next_update), scheduled=scheduled)
                            )
                            if reused.rowcount == 1:
                                return int(current)
                    number = (current or 0) + 1
                    conn.execute(
                        k.insert().values(
                            issuer_id=issuer_id,
                            shard=shard,
                            number=number,
                            this_update=utc(this_update),
                            next_update=utc(next_update),
                            scheduled=scheduled,
                        )
                    )
                    return int(number)
            except sa.exc.IntegrityError:
                continue
        raise ServiceError("could not allocate a CRL number: too much contention")

    def published(
        self,
        issuer_id: str,
        number: int,
        *,
        entries: int,
        sha256: str,
        at: dt.datetime,
        shown_after_expiry: Sequence[int],
        outbox_done: Sequence[int] = (),
        shard: int = 0,
    ) -> None:
        """Record a published CRL, the entries it showed after expiry and the CRL work it did."""
        k, c = schema.crls, schema.certificates
        shown = [serial_column(s) for s in shown_after_expiry]
        with self.engine.begin() as conn:
            outbox.mark_done(conn, outbox_done, at)
            conn.execute(
                k.update()
                .where(k.c.issuer_id == issuer_id, k.c.shard == shard, k.c.number == number)
                .values(entries=entries, sha256=sha256, published_at=utc(at))
            )
            for i in range(0, len(shown), CHUNK):
                conn.execute(
                    c.update()
                    .where(c.c.issuer_id == issuer_id, c.c.serial.in_(shown[i : i + CHUNK]))
                    .values(crl_shown_after_expiry=True)
                )
            detail = {"shard": shard, "number": number, "entries": entries, "sha256": sha256}
            append_audit(conn, at, "crl", issuer_id, None, detail)

    def last_scheduled(self, issuer_id: str, shard: int = 0) -> CRLRow | None:
        """The newest published scheduled CRL of this issuer's `shard`."""
        return self._last(issuer_id, shard, scheduled_only=True)

    def last_published(self, issuer_id: str, shard: int = 0) -> CRLRow | None:
        """The newest published CRL of this issuer's `shard`, scheduled or made for a revocation."""
        return self._last(issuer_id, shard, scheduled_only=False)

    def _last(self, issuer_id: str, shard: int, *, scheduled_only: bool) -> CRLRow | None:
        k = schema.crls
        query = sa.select(k).where(k.c.issuer_id == issuer_id, k.c.shard == shard, k.c.published_at.is_not(None))
        if scheduled_only:
            query = query.where(k.c.scheduled.is_(True))
        query = query.order_by(k.c.number.desc()).limit(1)
        with self.engine.connect() as conn:
            r = conn.execute(query).first()
        return None if r is None else crl_row(r)

    def highest_shard(self, issuer_id: str) -> int:
        """The highest shard this issuer ever numbered a CRL for (0: only the full CRL).

        Every shard that certificates name has had a CRL (`serve` makes them all at start, a
        revocation makes its own), so this keeps them published after `crl.shards` is lowered.
        By the unique (issuer, shard, number) index, not by the certificates.
        """
        k = schema.crls
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(k.c.shard)).where(k.c.issuer_id == issuer_id)).scalar_one()
        return int(top or 0)
