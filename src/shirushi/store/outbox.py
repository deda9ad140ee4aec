"""The outbox: follow-up work written with each change, read and marked done later. Does database I/O.

Every change that must be followed by other work (re-signing an OCSP response, a new CRL)
writes its rows here in its own transaction (`add`); `Outbox` reads what is pending and marks it
done once it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shirushi.store import schema
from shirushi.store.database import CHUNK
from shirushi.store.records import OutboxRow, outbox_row, serial_column, utc


def outbox_values(kind: Literal["ocsp", "crl"], issuer_id: str, serial: int | None, at: dt.datetime) -> dict[str, Any]:
    """One outbox row's column values."""
    return {
        "kind": kind,
        "issuer_id": issuer_id,
        "serial": None if serial is None else serial_column(serial),
        "created_at": utc(at),
    }


def add(conn: Connection, kind: Literal["ocsp", "crl"], issuer_id: str, serial: int | None, at: dt.datetime) -> None:
    conn.execute(schema.outbox.insert().values(**outbox_values(kind, issuer_id, serial, at)))


def mark_done(conn: Connection, ids: Sequence[int], at: dt.datetime) -> None:
    o = schema.outbox
    for i in range(0, len(ids), CHUNK):
        conn.execute(o.update().where(o.c.id.in_(list(ids[i : i + CHUNK]))).values(done_at=utc(at)))


class Outbox:
    """The pending follow-up work of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pending(self, older_than: dt.datetime | None = None) -> list[OutboxRow]:
        """Work not yet done, oldest first."""
        o = schema.outbox
        query = sa.select(o.c.id, o.c.kind, o.c.issuer_id, o.c.serial).where(o.c.done_at.is_(None)).order_by(o.c.id)
        if older_than is not None:
            query = query.where(o.c.created_at <= utc(older_than))
        with self.engine.connect() as conn:
            return [outbox_row(r) for r in conn.execute(query)]

    def pending_ocsp(self, issuer_id: str, serials: Sequence[int]) -> list[OutboxRow]:
        """The OCSP work not yet done for these serials."""
        o = schema.outbox
        out: list[OutboxRow] = []
        with self.engine.connect() as conn:
            for i in range(0, len(serials), CHUNK):
                chunk = [serial_column(s) for s in serials[i : i + CHUNK]]
                query = sa.select(o.c.id, o.c.kind, o.c.issuer_id, o.c.serial).where(
                    o.c.done_at.is_(None), o.c.kind == "ocsp", o.c.issuer_id == issuer_id, o.c.serial.in_(chunk)
                )
                out.extend(outbox_row(r) for r in conn.execute(query))
        return out

    def done(self, ids: Sequence[int], at: dt.datetime) -> None:
        if ids:
            with self.engine.begin() as conn:
                mark_done(conn, ids, at)
