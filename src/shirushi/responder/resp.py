"""A small pipelined Redis client for the hot path: one asyncio connection. Does network I/O.

A command is a prebuilt byte string (respwire.py encodes and parses RESP2); commands issued during
one event-loop turn go out in one write, and replies are matched to callbacks in order (Redis
answers in order on a connection). redis-py's asyncio client turns every command into a coroutine
with a pool checkout, which costs more than the HTTP side spends on a whole request (figures in
docs/responder.md and bench/RESULTS.md).

Failure is a value: a callback receives `FAILED` when the connection is down, breaks, or stalls
longer than the timeout, and the responder turns that into `tryLater` (RFC 6960 2.3), never into
a stale answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Final, cast

from shirushi.errors import ConfigError
from shirushi.responder.respwire import FAILED, ProtocolError, Reply, RespError, command, parse_reply

log = logging.getLogger("shirushi.responder")

Callback = Callable[[Reply], None]
MAX_PENDING: Final = 20000


def redact(url: str) -> str:
    """The URL without its password (user:password@ and ?password=), for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(q for q in parts.query.split("&") if not q.startswith("password="))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Address:
    """Where and how to reach Redis, from a redis.url (unix://, redis://, rediss://)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        self.path: str | None = None
        self.host = ""
        self.port = 6379
        self.ssl: ssl.SSLContext | None = None
        db_text = query.get("db", ["0"])[0]
        if parts.scheme == "unix":
            self.path = parts.path
        elif parts.scheme in ("redis", "rediss"):
            self.host = parts.hostname or "localhost"
            try:
                self.port = parts.port or 6379
            except ValueError:
                raise ConfigError(f"redis.url {redact(url)!r} has a bad port") from None
            if parts.path.strip("/"):
                db_text = parts.path.strip("/")
            if parts.scheme == "rediss":
                self.ssl = ssl.create_default_context()
        else:
            raise ConfigError(f"redis.url {redact(url)!r}: scheme must be unix, redis or rediss")
        if not db_text.isdigit():
            raise ConfigError(f"redis.url {redact(url)!r}: database must be a number")
        self.db = int(db_text)
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        password = parts.password or query.get("password", [None])[0]
        self.password = urllib.parse.unquote(password) if password else None

    def handshake(self, select_db: bool = True) -> list[bytes]:
        """AUTH and SELECT commands to send first on a new connection."""
        out = []
        if self.password is not None:
            user = (self.username or "default").encode()
            out.append(command(b"AUTH", user, self.password.encode()))
        if select_db and self.db:
            out.append(command(b"SELECT", str(self.db).encode()))
        return out

    async def open(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol]) -> None:
        if self.path is not None:
            await loop.create_unix_connection(factory, self.path)
        else:
            await loop.create_connection(factory, self.host, self.port, ssl=self.ssl)


class Connection(asyncio.Protocol):
    """One Redis connection: pipelined commands, replies delivered to callbacks in order.

    `on_push`, when given, receives replies that no command is waiting for (pub/sub messages).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[Connection], None],
        on_push: Callable[[Reply], None] | None = None,
    ) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[Callback] = collections.deque()
        self.out: list[bytes] = []
        self.buf = bytearray()
        self.last_progress = loop.time()
        self.closed = False
        self._on_lost = on_lost
        self._on_push = on_push

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, cmd: bytes, callback: Callback) -> bool:
        """Queue `cmd`; `callback` gets its reply. False (and no callback) when not possible."""
        if self.closed or len(self.pending) >= MAX_PENDING:
            return False
        if not self.pending:
            self.last_progress = self.loop.time()
        self.pending.append(callback)
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(cmd)
        return True

    def send_push(self, cmd: bytes) -> None:
        """A command whose replies arrive through `on_push` (SUBSCRIBE, PING when subscribed)."""
        if self.closed:
            return
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(cmd)

    def _flush(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def data_received(self, data: bytes) -> None:
        self.last_progress = self.loop.time()
        buf = self.buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                item = parse_reply(buf, pos)
                if item is None:
                    break
                value, pos = item
                if self.pending:
                    self._deliver(self.pending.popleft(), value)
                elif self._on_push is not None:
                    self._on_push(value)
                else:
                    raise ProtocolError("reply without a command")
        except ProtocolError as exc:
            log.warning("redis: %s; reconnecting", exc)
            self.abort()
            return
        del buf[:pos]

    @staticmethod
    def _deliver(callback: Callback, value: Reply) -> None:
        try:
            callback(value)
        except Exception:  # A bug in one request handler must not break the shared connection.
            log.exception("redis reply handler failed")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self.connection_lost(None)

    def stalled(self, now: float, timeout: float) -> bool:
        """True when commands wait and Redis has said nothing for `timeout` seconds."""
        return bool(self.pending) and now - self.last_progress > timeout

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.transport = None
        pending, self.pending = self.pending, collections.deque()
        for callback in pending:
            self._deliver(callback, FAILED)
        self._on_lost(self)


class Link:
    """A Redis connection that is re-established after failures, with backoff.

    While it is down, `send` refuses at once (the caller answers tryLater) and a reconnection is
    attempted in the background; a connection attempt is bounded by the timeout.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: Address,
        timeout: float,
        name: str = "redis",
        on_push: Callable[[Reply], None] | None = None,
        on_up: Callable[[Connection], None] | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.address = address
        self.timeout = timeout
        self.name = name
        self.conn: Connection | None = None
        self._on_push = on_push
        self._on_up = on_up
        self._on_down = on_down
        self._connecting = False
        self._next_attempt = 0.0
        self._backoff = 0.05
        self._stopped = False
        self._was_up = False
        self.connects = 0  # connections established, for the reconnect metric
        self._task: asyncio.Task[None] | None = None

    def send(self, cmd: bytes, callback: Callback) -> bool:
        conn = self.conn
        if conn is None:
            self.kick()
            return False
        return conn.send(cmd, callback)

    def kick(self) -> None:
        """Start a connection attempt unless one runs or the backoff has not elapsed."""
        if self._connecting or self._stopped or self.conn is not None:
            return
        if self.loop.time() < self._next_attempt:
            return
        self._connecting = True
        self._task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        conn = Connection(self.loop, self._lost, self._on_push)
        try:
            await asyncio.wait_for(self.address.open(self.loop, lambda: conn), self.timeout)
        except (TimeoutError, OSError) as exc:
            self._failed(exc)
            return
        finally:
            self._connecting = False
        if self._stopped:
            conn.abort()
            return
        self.conn = conn
        self.connects += 1
        for cmd in self.address.handshake(select_db=self._on_push is None):
            conn.send(cmd, self._check_handshake)
        self._backoff = 0.05
        if not self._was_up:
            log.info("%s: connected", self.name)
            self._was_up = True
        if self._on_up is not None:
            self._on_up(conn)

    def _check_handshake(self, value: Reply) -> None:
        if isinstance(value, RespError):
            log.error("%s: %s", self.name, value.message.decode("utf-8", "replace"))
            if self.conn is not None:
                self.conn.abort()

    def _failed(self, exc: BaseException) -> None:
        if self._was_up or self._backoff == 0.05:
            log.warning("%s: cannot connect (%s); answering tryLater meanwhile", self.name, exc or "timeout")
        self._was_up = False
        self._next_attempt = self.loop.time() + self._backoff
        self._backoff = min(self._backoff * 2, 1.0)

    def _lost(self, conn: Connection) -> None:
        if self.conn is conn:
            self.conn = None
            if self._on_down is not None:
                self._on_down()
            if not self._stopped:
                log.warning("%s: connection lost", self.name)
                self._was_up = False
                self._next_attempt = self.loop.time() + self._backoff
                self._backoff = min(self._backoff * 2, 1.0)

    def check(self, now: float) -> None:
        """Called periodically: drop a stalled connection, retry a dead one."""
        conn = self.conn
        if conn is not None and conn.stalled(now, self.timeout):
            log.warning("%s: no reply for %.1f s; reconnecting", self.name, self.timeout)
            conn.abort()
        elif conn is None:
            self.kick()

    def close(self) -> None:
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.conn is not None:
            self.conn.abort()
