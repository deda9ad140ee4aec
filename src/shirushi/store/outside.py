"""What the store keeps of outside CAs (`issuer add`, `import`): their issuer rows, the
certificates imported from them, and the last CRL imported. Does database I/O.

An import is one transaction: new certificates, new revocations (each with an outbox row for
its OCSP response and an audit entry) and one audit entry summing it up commit together or not
at all, so an import that fails part-way changes nothing. Revocations are never undone by an
import (a line gone from an index or a CRL is not an unrevocation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from shirushi.errors import ConflictError
from shirushi.store import bulkload, schema
from shirushi.store.audit import audit_values
from shirushi.store.records import IssuerRow, aware, issuer_row, serial_column, utc
from shirushi.store.store import Store

# An index line says when a certificate expires, not when it began.
UNKNOWN_NOT_BEFORE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# A serial seen only on a CRL: revoked until its certificate is imported, whatever its expiry.
UNKNOWN_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
KIND = "outside"


# Not frozen: a frozen dataclass pays one object.__setattr__ per field, and an import makes
# one per index line (bench/outside). Never changed once made.
@dataclasses.dataclass(slots=True)
class Seen:
    """One certificate as an outside source shows it (index line, certificate file, CRL entry)."""

    serial: int
    not_after: dt.datetime = UNKNOWN_NOT_AFTER
    subject: str = ""
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    der: bytes = b""
    not_before: dt.datetime = UNKNOWN_NOT_BEFORE
    spki_sha256: str = ""
    dns_names: tuple[str, ...] = ()


class Known(NamedTuple):
    """What the store knows of one certificate (a tuple: a million are made per import)."""

    revoked: bool
    has_der: bool


@dataclasses.dataclass(frozen=True)
class Changes:
    """What an import changes, decided by `outside.importer` from what the store knows."""

    new: Sequence[Seen] = ()
    revoke: Sequence[Seen] = ()
    complete: Sequence[Seen] = ()  # rows without the certificate, now given it


def add_issuer(store: Store, id: str, name: str, subject: str, der: bytes, at: dt.datetime) -> None:
    try:
        with store.engine.begin() as conn:
            conn.execute(
                schema.issuers.insert().values(
                    id=id, name=name, subject=subject, certificate=der, created_at=utc(at), outside=True
                )
            )
            conn.execute(schema.audit.insert().values(**audit_values(at, "issuer-add", id, None, {"name": name})))
    except sa.exc.IntegrityError:
        raise ConflictError(f"an issuer named {name!r} or with this key is registered already") from None


def outside_issuers(store: Store) -> list[IssuerRow]:
    i = schema.issuers
    with store.engine.connect() as conn:
        return [issuer_row(r) for r in conn.execute(sa.select(i).where(i.c.outside).order_by(i.c.created_at))]


def known(store: Store, issuer_id: str) -> dict[int, Known]:
    """Every certificate the store holds for this issuer: revoked or not, certificate or not."""
    # Plain SQL: no per-row type processing for a million rows (bench/outside).
    query = sa.text(
        "SELECT serial, revoked_at IS NOT NULL, length(der) > 0 FROM certificates WHERE issuer_id = :issuer"
    )
    with store.engine.connect() as conn:
        rows = conn.execution_options(yield_per=50_000).execute(query, {"issuer": issuer_id})
        return {int(s, 16): Known(bool(r), bool(d)) for s, r, d in rows}


COLUMNS = (
    "issuer_id", "serial", "der", "subject", "dns_names", "not_before", "not_after", "spki_sha256", "kind",
    "created_at", "revoked_at", "revocation_reason", "status_version", "crl_shown_after_expiry",
)  # fmt: skip


def _insert(conn: sa.Connection, issuer_id: str, seen: Sequence[Seen], at: dt.datetime) -> None:
    """Insert new certificates, converted the way SQLAlchemy would store them (`store.bulkload`)."""
    when = bulkload.sqlite_time if conn.dialect.name == "sqlite" else bulkload.pg_time
    created = when(at)
    # An index line carries no notBefore: the one constant, converted once.
    unknown_start = when(UNKNOWN_NOT_BEFORE)
    rows = [
        (
            issuer_id,
            serial_column(s.serial),
            s.der,
            s.subject,
            " ".join(s.dns_names),
            unknown_start if s.not_before is UNKNOWN_NOT_BEFORE else when(s.not_before),
            when(s.not_after),
            s.spki_sha256,
            KIND,
            created,
            when(s.revoked_at),
            s.reason if s.revoked_at is not None else None,
            1 if s.revoked_at is not None else 0,
            False,
        )
        for s in seen
    ]
    bulkload.insert(conn, "certificates", COLUMNS, rows, key=1)


def apply(
    store: Store,
    issuer_id: str,
    changes: Changes,
    at: dt.datetime,
    source: dict[str, Any],
    crl: tuple[int | None, dt.datetime] | None = None,
) -> None:
    """Commit one import in one transaction (see the module docstring).

    `crl`: the (number, thisUpdate) of the CRL this import comes from, recorded with it and
    checked against the last one again inside the transaction (two imports racing).
    """
    c = schema.certificates
    with store.engine.begin() as conn:
        if crl is not None:
            _record_crl(conn, issuer_id, *crl)
        _insert(conn, issuer_id, changes.new, at)
        for seen in changes.complete:
            conn.execute(
                c.update()
                .where(c.c.issuer_id == issuer_id, c.c.serial == serial_column(seen.serial))
                .values(
                    der=seen.der,
                    subject=seen.subject,
                    dns_names=" ".join(seen.dns_names),
                    not_before=utc(seen.not_before),
                    not_after=utc(seen.not_after),
                    spki_sha256=seen.spki_sha256,
                )
            )
        revoked = []
        for seen in changes.revoke:
            assert seen.revoked_at is not None
            result = conn.execute(
                c.update()
                .where(c.c.issuer_id == issuer_id, c.c.serial == serial_column(seen.serial), c.c.revoked_at.is_(None))
                .values(
                    revoked_at=utc(seen.revoked_at),
                    revocation_reason=seen.reason,
                    status_version=c.c.status_version + 1,
                )
            )
            if result.rowcount == 1:
                revoked.append(seen)
        # New revoked rows are signed by the import itself or the next full load; a revocation of
        # a known certificate must reach OCSP even if this process dies now: the outbox has it.
        pending = [*revoked, *(s for s in changes.new if s.revoked_at is not None)]
        if pending:
            _pending_rows(conn, issuer_id, pending, at, source)
        summary = {"new": len(changes.new), "revoked": len(pending), "completed": len(changes.complete), **source}
        conn.execute(schema.audit.insert().values(**audit_values(at, "import", issuer_id, None, summary)))


def _pending_rows(
    conn: sa.Connection, issuer_id: str, pending: Sequence[Seen], at: dt.datetime, source: dict[str, Any]
) -> None:
    """The outbox and audit rows of these revocations, through the driver as `_insert` does
    (a first import may revoke a hundred thousand: SQLAlchemy's per-row cost was seconds)."""
    when = bulkload.sqlite_time if conn.dialect.name == "sqlite" else bulkload.pg_time
    created = when(at)
    outbox = [("ocsp", issuer_id, serial_column(s.serial), created) for s in pending]
    bulkload.insert(conn, "outbox", ("kind", "issuer_id", "serial", "created_at"), outbox, key=2)
    audit = [
        (
            created,
            "revoke",
            issuer_id,
            serial_column(s.serial),
            json.dumps({"reason": s.reason, "revoked_at": s.revoked_at, **source}, sort_keys=True, default=str),
        )
        for s in pending
    ]
    bulkload.insert(conn, "audit", ("at", "action", "issuer_id", "serial", "detail"), audit, key=3)


def _record_crl(conn: sa.Connection, issuer_id: str, number: int | None, this_update: dt.datetime) -> None:
    i = schema.issuers
    row = conn.execute(sa.select(i.c.crl_number, i.c.crl_this_update).where(i.c.id == issuer_id)).one()
    last_number = None if row.crl_number is None else int(row.crl_number)
    last_time = aware(row.crl_this_update)
    if number is not None and last_number is not None and number < last_number:
        raise ConflictError(f"CRL number {number} is older than the last imported ({last_number}); nothing changed")
    if last_time is not None and this_update < last_time:
        raise ConflictError(
            f"CRL thisUpdate {this_update:%Y-%m-%dT%H:%M:%SZ} is older than the last imported "
            f"({last_time:%Y-%m-%dT%H:%M:%SZ}); nothing changed"
        )
    conn.execute(i.update().where(i.c.id == issuer_id).values(crl_number=number, crl_this_update=utc(this_update)))
