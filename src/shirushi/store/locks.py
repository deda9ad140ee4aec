"""PostgreSQL advisory locks: the leader of several backends, and one CRL generation per scope.

Does database I/O. Session-level advisory locks (PostgreSQL manual, "Advisory Locks") belong to
a connection: the server drops them the moment that connection ends, so a backend killed with
SIGKILL releases its locks as soon as the kernel closes its socket, and a machine that vanished
releases them when the server's TCP keepalives give up on it. No row, no expiry, no clock.

Keys are the two-int form `(class, object)`: the class says what the lock is for, so a
shirushi lock never meets another application's single-bigint locks on the same database.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from shirushi.errors import ServiceError

log = logging.getLogger("shirushi.store")

LEADER_CLASS = 0x5348_0001  # "SH" 1: the schedules of `serve`
CRL_CLASS = 0x5348_0002  # "SH" 2: one CRL generation per (issuer, shard)
LEADER_OBJECT = 1

# The leader's connection: the server gives up on a silent peer after idle + interval * count
# (10 + 5 * 3 = 25 s) and drops the lock; the client gives up on an unacknowledged send after
# tcp_user_timeout (15 s), so a leader cut off from the database notices (and stops its
# schedules) before the server lets another backend take over. Both under the 30 s takeover.
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
TCP_USER_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 5_000


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def scope_key(text: str) -> int:
    """A stable signed 32-bit lock object for `text` (two scopes sharing one only wait more)."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _leader_engine(engine: Engine) -> Engine:
    """An engine of single, unpooled connections with keepalives and timeouts set both ways."""
    options = " ".join(
        [f"-c {k}={v}" for k, v in SERVER_KEEPALIVE.items()]
        + [f"-c tcp_user_timeout={TCP_USER_TIMEOUT_MS}", f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"]
    )
    connect_args = {
        "connect_timeout": CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": SERVER_KEEPALIVE["tcp_keepalives_idle"],
        "keepalives_interval": SERVER_KEEPALIVE["tcp_keepalives_interval"],
        "keepalives_count": SERVER_KEEPALIVE["tcp_keepalives_count"],
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "options": options,
    }
    return sa.create_engine(engine.url, poolclass=NullPool, connect_args=connect_args, isolation_level="AUTOCOMMIT")


class LeaderLock:
    """`pg_try_advisory_lock` on a connection of its own, held while this process leads."""

    def __init__(self, engine: Engine, obj: int = LEADER_OBJECT) -> None:
        self._engine = _leader_engine(engine)
        self._obj = obj
        self._conn: Connection | None = None

    @property
    def description(self) -> str:
        return "postgresql advisory lock"

    def try_acquire(self) -> bool:
        """Take the lock unless another session holds it; never waits for it."""
        if self._conn is not None:
            return self.still_held()
        try:
            conn = self._engine.connect()
        except sa.exc.DBAPIError as exc:
            log.warning("leader lock: database unreachable", extra={"error": str(exc.orig)})
            return False
        try:
            got = bool(
                conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:c, :o)"), {"c": LEADER_CLASS, "o": self._obj}
                ).scalar_one()
            )
        except sa.exc.DBAPIError as exc:
            log.warning("leader lock: cannot ask", extra={"error": str(exc.orig)})
            got = False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """True while the lock's connection answers: the session, hence the lock, is alive."""
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                    " AND classid = :c AND objid = :o AND granted"
                ),
                {"c": LEADER_CLASS & 0xFFFFFFFF, "o": self._obj & 0xFFFFFFFF},
            ).scalar_one()
        except sa.exc.DBAPIError as exc:
            log.warning("leader lock: connection lost", extra={"error": str(exc.orig)})
            self._drop()
            return False
        if not held:
            self._drop()
        return bool(held)

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(sa.exc.DBAPIError):
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :o)"), {"c": LEADER_CLASS, "o": self._obj})
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()


@contextlib.contextmanager
def scope_lock(engine: Engine, text: str, *, timeout: float) -> Iterator[None]:
    """Hold the session advisory lock of `text` (CRL_CLASS) on a pooled connection meanwhile.

    Waits at most `timeout` seconds (lock_timeout), then raises ServiceError. The lock is
    released on the way out; a connection whose unlock failed is thrown away, not pooled, so
    a lock never outlives the block in a pooled session.
    """
    obj = scope_key(text)
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        try:
            conn.execute(sa.text("SELECT set_config('lock_timeout', :t, false)"), {"t": f"{int(timeout * 1000)}ms"})
            conn.execute(sa.text("SELECT pg_advisory_lock(:c, :o)"), {"c": CRL_CLASS, "o": obj})
            conn.execute(sa.text("SELECT set_config('lock_timeout', '0', false)"))
        except sa.exc.OperationalError as exc:
            conn.invalidate()
            raise ServiceError(f"{text}: another backend holds its CRL lock ({exc.orig})") from None
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:c, :o)"), {"c": CRL_CLASS, "o": obj})
            except sa.exc.DBAPIError:
                conn.invalidate()  # the session ends, and with it the lock
    finally:
        conn.close()
