"""Many new rows into `certificates` inside the caller's transaction: an outside CA's first
import (a million index lines, bench/outside). Does database I/O.

The rows go in through the driver (SQLAlchemy's per-row parameter processing cost more than
the insert itself), sorted by serial so that the unique (issuer_id, serial) index is appended to
rather than rewritten at random pages.

SQLite, when the new rows are many and outnumber the rows already there: the table's secondary
indexes are dropped, the rows inserted, and the indexes created again from their own stored
definitions (`sqlite_master.sql`), all in the caller's one transaction: an index built from one
sorted pass costs less than five B-trees maintained row by row (bench/outside/bench_bulkload.py:
the store's part of a million new rows 133 s against 211 s, same run, loaded machine).
SQLite's DDL is transactional, so a crash anywhere before the commit leaves the database as it
was, indexes included; the journal mode (WAL) and `synchronous=FULL` are kept as `database.py` sets them: the import is
one commit, so they cost one fsync, and a weaker mode would risk what was imported before. Only
the page cache is raised, for this connection, and put back (not `temp_store`: SQLite refuses
to change it inside a transaction once the connection has opened its temp database).

PostgreSQL: COPY (psycopg), indexes kept (dropping one there would lock the table against the
API's readers for the whole import).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

# Below this many new rows (or fewer than the table holds already) indexes are maintained as
# usual: rebuilding them costs a pass over the whole table.
REBUILD_ROWS = 50_000
INSERT_CHUNK = 10_000
CACHE_KIB = 262_144  # SQLite's page cache during a bulk load (the default is 2 MiB)


def insert(conn: sa.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]], key: int) -> None:
    """Insert `rows` (values in `columns` order, as the driver takes them) sorted by `rows[i][key]`."""
    if not rows:
        return
    rows.sort(key=lambda r: r[key])
    if conn.dialect.name == "sqlite":
        _sqlite(conn, table, columns, rows)
    else:
        _copy(conn, table, columns, rows)


def _sqlite(conn: sa.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rebuild: list[tuple[str, str]] = []
    if len(rows) >= REBUILD_ROWS:
        (count,) = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").one()
        if len(rows) >= count:
            # Indexes SQLite made for constraints (sql IS NULL) cannot be dropped; they stay.
            rebuild = [
                (str(name), str(text))
                for name, text in conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                    (table,),
                )
            ]
    raw: Any = conn.connection.driver_connection
    if rebuild and not raw.in_transaction:
        # Python's sqlite3 opens its transaction only at the first INSERT/UPDATE/DELETE: a DROP
        # INDEX before it would commit on its own, and a crash would leave the table without its
        # indexes (tests/test_outside_import_crash.py). Open the caller's transaction now; the
        # driver's commit and rollback end it as they would their own.
        conn.exec_driver_sql("BEGIN")
    saved = _pragmas(conn, cache_size=-CACHE_KIB) if len(rows) > INSERT_CHUNK else {}
    try:
        for name, _ in rebuild:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        for i in range(0, len(rows), INSERT_CHUNK):
            conn.exec_driver_sql(sql, rows[i : i + INSERT_CHUNK])  # type: ignore[arg-type]
        for _, text in rebuild:
            conn.exec_driver_sql(text)
    finally:
        _pragmas(conn, **saved)


def _pragmas(conn: sa.Connection, **values: int) -> dict[str, int]:
    """Set connection-scoped PRAGMAs; returns their earlier values."""
    before = {}
    for name, value in values.items():
        (before[name],) = conn.exec_driver_sql(f"PRAGMA {name}").one()
        conn.exec_driver_sql(f"PRAGMA {name} = {int(value)}")
    return before


def _copy(conn: sa.Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    raw: Any = conn.connection.driver_connection  # psycopg 3, in the caller's transaction
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def sqlite_time(t: dt.datetime | None) -> str | None:
    """SQLAlchemy's own storage format for DateTime on SQLite (UTC wall time, microseconds)."""
    if t is None:
        return None
    if t.tzinfo is not dt.UTC:
        t = t.astimezone(dt.UTC)
    # One call instead of astimezone + replace + isoformat: "YYYY-MM-DD HH:MM:SS.ffffff+00:00".
    return t.isoformat(" ", "microseconds")[:26]


def pg_time(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else t.astimezone(dt.UTC)
