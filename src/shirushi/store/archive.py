"""What the records export and the retention job read and prune (policy 5.5). Does database I/O.

Reads stream in keyset-paginated batches (a CA's whole history does not fit in memory). Pruning
deletes only what `archive/retention.py` chose, in batches, each batch with its audit entry in the
same transaction. The audit table itself is never pruned: its rows are append-only (the triggers
refuse DELETE) and the exported hash chain runs over all of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.archive.chain import AuditRow
from shirushi.store import schema
from shirushi.store.audit import append_audit
from shirushi.store.database import CHUNK
from shirushi.store.records import aware, utc

BATCH = 2000
# Certificates one retention run prunes at most (a first run after years may find millions).
PRUNE_LIMIT = 100_000
# Kinds of certificate retention may prune: never a CA certificate, which the records of
# everything it issued need.
PRUNABLE_KINDS = ("server", "ocsp-signer")


def audit_horizon(engine: Engine) -> int:
    """The highest audit id below which no row can still appear (0 when the log is empty).

    PostgreSQL hands out ids before commit, so a row with a lower id may commit after a higher
    one: a SHARE lock waits for every transaction still inserting into the table (and holds new
    ones off for the one query), so every id up to the maximum read under it is final. SQLite
    has one writer at a time and numbers rows inside it, so its committed maximum is final.
    """
    a = schema.audit
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE audit IN SHARE MODE"))
        top = conn.execute(sa.select(sa.func.max(a.c.id))).scalar_one()
    return int(top or 0)


def first_audit_id(engine: Engine, since: dt.datetime) -> int | None:
    """The id of the first audit row at or after `since`."""
    a = schema.audit
    with engine.connect() as conn:
        found = conn.execute(sa.select(sa.func.min(a.c.id)).where(a.c.at >= utc(since))).scalar_one()
    return None if found is None else int(found)


def audit_rows(engine: Engine, *, after: int = 0, through: int, action: str | None = None) -> Iterator[AuditRow]:
    """Audit rows with `after` < id <= `through` (of one `action`, if given), in id order."""
    a = schema.audit
    last = after
    while last < through:
        query = sa.select(a).where(a.c.id > last, a.c.id <= through).order_by(a.c.id).limit(BATCH)
        if action is not None:
            query = query.where(a.c.action == action)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        for r in rows:
            yield AuditRow(int(r.id), aware(r.at), r.action, r.issuer_id, r.serial, r.detail)  # type: ignore[arg-type]
        last = int(rows[-1].id)


def certificates(engine: Engine, since: dt.datetime | None) -> Iterator[Any]:
    """Certificate rows (with the issuer's name) issued or revoked at or after `since` (all
    without it), in id order."""
    c, i = schema.certificates, schema.issuers
    last = 0
    while True:
        query = (
            sa.select(c, i.c.name.label("issuer_name"))
            .join(i, i.c.id == c.c.issuer_id)
            .where(c.c.id > last)
            .order_by(c.c.id)
            .limit(BATCH)
        )
        if since is not None:
            query = query.where(sa.or_(c.c.created_at >= utc(since), c.c.revoked_at >= utc(since)))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield from rows
        last = int(rows[-1].id)


def crl_records(engine: Engine) -> list[Any]:
    """Every numbered CRL with its issuer's name, in (issuer, shard, number) order."""
    k, i = schema.crls, schema.issuers
    query = (
        sa.select(k, i.c.name.label("issuer_name"))
        .join(i, i.c.id == k.c.issuer_id)
        .order_by(i.c.name, k.c.shard, k.c.number)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def problem_reports(engine: Engine, since: dt.datetime | None) -> list[Any]:
    p = schema.problem_reports
    query = sa.select(p).order_by(p.c.id)
    if since is not None:
        query = query.where(sa.or_(p.c.received_at >= utc(since), p.c.closed_at >= utc(since)))
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def issuers(engine: Engine) -> list[Any]:
    i = schema.issuers
    with engine.connect() as conn:
        return list(conn.execute(sa.select(i).order_by(i.c.created_at, i.c.name)).all())


# -- retention -------------------------------------------------------------------------------


def expired_before(engine: Engine, cutoff: dt.datetime, limit: int = PRUNE_LIMIT) -> list[tuple[str, str, str]]:
    """(issuer id, serial column, issuer name) of up to `limit` certificates retention may prune:
    notAfter before `cutoff`, not a CA certificate, and not a revocation one of our CRLs still
    owes an entry after expiry (RFC 5280 3.3). The next run takes the rest."""
    c, i = schema.certificates, schema.issuers
    query = (
        sa.select(c.c.issuer_id, c.c.serial, i.c.name)
        .join(i, i.c.id == c.c.issuer_id)
        .where(
            c.c.not_after < utc(cutoff),
            c.c.kind.in_(PRUNABLE_KINDS),
            # An outside CA's revocations are on its own CRLs, not ours.
            sa.or_(c.c.revoked_at.is_(None), c.c.crl_shown_after_expiry.is_(True), i.c.outside.is_(True)),
        )
        .order_by(c.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(r.issuer_id, r.serial, r.name) for r in conn.execute(query)]


def delete_certificates(
    engine: Engine, issuer_id: str, serials: Sequence[str], *, at: dt.datetime, detail: dict[str, Any]
) -> int:
    """Delete these certificates of one issuer and their finished outbox work; one audit entry."""
    c, o = schema.certificates, schema.outbox
    deleted = 0
    with engine.begin() as conn:
        for n in range(0, len(serials), CHUNK):
            chunk = list(serials[n : n + CHUNK])
            deleted += conn.execute(c.delete().where(c.c.issuer_id == issuer_id, c.c.serial.in_(chunk))).rowcount
            conn.execute(o.delete().where(o.c.issuer_id == issuer_id, o.c.serial.in_(chunk), o.c.done_at.is_not(None)))
        append_audit(conn, at, "retention-prune", issuer_id, None, {**detail, "certificates": deleted})
    return deleted
