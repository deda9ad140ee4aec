"""The database connection and its schema revision: engine set-up, migrations. Does database I/O.

SQLite (a file in data_dir) by default, PostgreSQL by URL; Alembic scripts inside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.errors import ServiceError, StateError
from shirushi.store import schema

MIGRATIONS = Path(__file__).parent / "migrations"
# Values per IN (...) list: within SQLite's and PostgreSQL's parameter limits with room to spare.
CHUNK = 500


def connect(url: str, *, create: bool) -> Engine:
    """An engine for `url`; with `create` False a missing SQLite file is an error."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.exists():
            raise StateError(f"no database at {path}: run `shirushi init` (or check data_dir / --config)")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StateError(f"database.url cannot be used: {exc}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision.

    A database already at `schema.REVISION` is left alone without loading Alembic (a
    second of imports on a small machine, paid by every CLI command otherwise).
    """
    if revision(engine) == schema.REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except sa.exc.OperationalError as exc:
        raise ServiceError(f"database unreachable: {exc.orig}") from None


def revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None when it has none yet)."""
    version = sa.table("alembic_version", sa.column("version_num"))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.execute(sa.select(version.c.version_num)).all()
    except sa.exc.OperationalError as exc:
        raise ServiceError(f"database unreachable: {exc.orig}") from None
    # Several rows would mean branches: let Alembic sort that out.
    return str(rows[0].version_num) if len(rows) == 1 else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (repository, API) never block the writer; busy_timeout: concurrent CLI runs
    # wait instead of failing; synchronous=FULL: a committed revocation survives power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
