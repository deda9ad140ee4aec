"""Reads of revoked entries for CRL generation, through the driver's cursor. Does database I/O.

A CRL of 100,000 entries is read on every revocation-driven CRL; SQLAlchemy result rows cost
about 25 us each there (type processors, Row objects), the driver's plain tuples about 1 us. So
these queries go to the DBAPI cursor directly and build their rows from the driver's tuples; the
SQL is portable between SQLite and PostgreSQL (only the parameter style differs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from shirushi.store.database import CHUNK
from shirushi.store.records import OutboxRow, serial_column, serial_value
from shirushi.store.schema import OWED

UTC = dt.UTC


@dataclasses.dataclass(frozen=True, slots=True)
class RevokedRow:
    """One revoked certificate still owed a CRL entry, as stored."""

    serial: int
    revoked_at: dt.datetime
    reason: str
    not_after: dt.datetime


def _time(value: Any) -> dt.datetime:
    # SQLite hands back the stored text, PostgreSQL an aware datetime; everything stored is UTC.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    if value.tzinfo is not UTC:
        return value.astimezone(UTC)  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]


class RevokedReader:
    """The revoked entries of one database, read with plain cursors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql.replace("?", self._mark), tuple(params))
                return list(cursor.fetchall())
            finally:
                cursor.close()

    # The predicate of the partial index ix_certificates_owed (schema.OWED), spelled the same so
    # both databases use the index.
    _OWED = f"issuer_id = ? AND crl_shard = ? AND {OWED}"

    def entries(self, issuer_id: str, serials: Sequence[int] | None = None, *, shard: int = 0) -> list[RevokedRow]:
        """The named revocations of `shard` still owed an entry (all of them when `serials` is None)."""
        columns = "serial, revoked_at, revocation_reason, not_after"
        raw: list[tuple[Any, ...]] = []
        if serials is None:
            raw = self._rows(f"SELECT {columns} FROM certificates WHERE {self._OWED}", (issuer_id, shard))
        else:
            # By the unique (issuer_id, serial) index; the owed test is made here, since with it
            # in the SQL SQLite prefers walking the whole partial index.
            sql = (
                f"SELECT {columns}, crl_shown_after_expiry, crl_shard FROM certificates"
                " WHERE issuer_id = ? AND serial IN "
            )
            for i in range(0, len(serials), CHUNK):
                chunk = [serial_column(s) for s in serials[i : i + CHUNK]]
                rows = self._rows(sql + f"({', '.join('?' * len(chunk))})", (issuer_id, *chunk))
                raw += [r[:4] for r in rows if r[1] is not None and not r[4] and r[5] == shard]
        return [
            RevokedRow(serial_value(serial), _time(revoked_at), reason or "unspecified", _time(not_after))
            for serial, revoked_at, reason, not_after in raw
        ]

    def last_certificate_id(self) -> int:
        """The highest certificate row id (0 when there is none): rows above it are new."""
        return int(self._rows("SELECT max(id) FROM certificates", ())[0][0] or 0)

    def owed_since(self, issuer_id: str, after_id: int, limit: int, *, shard: int = 0) -> list[int] | None:
        """Serials of `shard`'s rows above `after_id` owed an entry; None when over `limit` rows.

        Catches revoked rows that arrived without an outbox row (inserted directly into the
        table, as benchmark instruments may). By primary-key range only, filtered here.
        """
        sql = (
            "SELECT issuer_id, serial, revoked_at, crl_shown_after_expiry, crl_shard FROM certificates"
            " WHERE id > ? LIMIT ?"
        )
        rows = self._rows(sql, (after_id, limit + 1))
        if len(rows) > limit:
            return None
        return [
            serial_value(serial)
            for issuer, serial, revoked_at, shown, in_shard in rows
            if issuer == issuer_id and revoked_at and not shown and in_shard == shard
        ]

    def pending_crl_work(self, issuer_id: str) -> dict[int, list[OutboxRow]]:
        """The outbox rows asking for a new CRL of this issuer, not yet done, by CRL shard.

        The serial is the revoked certificate, whose row says its shard; rows written by 0.1.0
        have none and, as every certificate then named the full CRL, count for shard 0.
        """
        sql = (
            "SELECT o.id, o.serial, c.crl_shard FROM outbox o LEFT JOIN certificates c"
            " ON c.issuer_id = o.issuer_id AND c.serial = o.serial"
            " WHERE o.kind = 'crl' AND o.issuer_id = ? AND o.done_at IS NULL"
        )
        work: dict[int, list[OutboxRow]] = {}
        for id, serial, shard in self._rows(sql, (issuer_id,)):
            row = OutboxRow(int(id), "crl", issuer_id, None if serial is None else serial_value(serial))
            work.setdefault(int(shard or 0), []).append(row)
        return work

    def latest_crl_number(self, issuer_id: str, shard: int = 0) -> int:
        """The highest CRL number reserved for this issuer's `shard` (0 before the first)."""
        rows = self._rows("SELECT max(number) FROM crls WHERE issuer_id = ? AND shard = ?", (issuer_id, shard))
        return int(rows[0][0] or 0)
