"""Reads of revoked entries for CRL generation, through the driver's cursor. Does database I/O.

A CRL of 100,000 entries is read on every revocation-driven CRL; SQLAlchemy result rows cost
about 25 us each there (type processors, Row objects), the driver's plain tuples about 1 us. So
these queries go to the DBAPI cursor directly and hand back plain tuples; the SQL is portable
between SQLite and PostgreSQL (only the parameter style differs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from shirushi.store.schema import OWED

UTC = dt.UTC

# Enough for SQLite's and PostgreSQL's parameter limits with room to spare.
CHUNK = 500


@dataclasses.dataclass(frozen=True, slots=True)
class RevokedRow:
    """One revoked certificate still owed a CRL entry, as stored."""

    serial: str  # lowercase hex, as stored
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
    _OWED = f"issuer_id = ? AND {OWED}"

    def owed_count(self, issuer_id: str) -> int:
        """How many revocations of this issuer are still owed a CRL entry."""
        return int(self._rows(f"SELECT count(*) FROM certificates WHERE {self._OWED}", (issuer_id,))[0][0])

    def entries(self, issuer_id: str, serials: Sequence[str] | None = None) -> list[RevokedRow]:
        """The named revocations still owed an entry (all of them when `serials` is None)."""
        columns = "serial, revoked_at, revocation_reason, not_after"
        sql = f"SELECT {columns} FROM certificates WHERE {self._OWED}"
        raw: list[tuple[Any, ...]] = []
        if serials is None:
            raw = self._rows(sql, (issuer_id,))
        else:
            for i in range(0, len(serials), CHUNK):
                chunk = list(serials[i : i + CHUNK])
                marks = ", ".join("?" * len(chunk))
                raw += self._rows(f"{sql} AND serial IN ({marks})", (issuer_id, *chunk))
        return [
            RevokedRow(serial, _time(revoked_at), reason or "unspecified", _time(not_after))
            for serial, revoked_at, reason, not_after in raw
        ]

    def pending_crl_work(self, issuer_id: str) -> list[tuple[int, str | None]]:
        """(id, serial hex) of the outbox rows asking for a new CRL of this issuer, not yet done.

        The serial is the revoked certificate; rows written by 0.1.0 have none.
        """
        sql = "SELECT id, serial FROM outbox WHERE kind = 'crl' AND issuer_id = ? AND done_at IS NULL"
        return [(int(r[0]), r[1]) for r in self._rows(sql, (issuer_id,))]

    def latest_crl_number(self, issuer_id: str) -> int:
        """The highest CRL number reserved for this issuer (0 before the first)."""
        rows = self._rows("SELECT max(number) FROM crls WHERE issuer_id = ?", (issuer_id,))
        return int(rows[0][0] or 0)
