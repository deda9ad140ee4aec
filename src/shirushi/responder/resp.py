"""A small pipelined Redis client for the hot path: one asyncio connection. Does network I/O.

A command is a prebuilt byte string (respwire.py encodes and parses RESP2); commands issued during
one event-loop turn go out in one write, and replies are matched to callbacks in order (Redis
answers in order on a connection). redis-py's asyncio client turns every command into a coroutine
with a pool checkout, which costs more than the HTTP side spends on a whole request (figures in
docs/responder.md and bench/RESULTS.md).

Failure is a value: a callback receives `FAILED` when the connection is down, breaks, or stalls
longer than the timeout, and the responder turns that into `tryLater` (RFC 6960 2.3), never into
a stale answer.

Where a `Link` connects comes from a `Locator`, asked on every (re)connect and never per command:
`Fixed` is one server; `responder/sentinel.py` finds the primary (or a replica) through Redis
Sentinel. An address found that way carries the role it must have, checked with `ROLE` right
after connecting, before the link counts as up (a failover may have changed it meanwhile).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Final, cast

from shirushi.responder.address import Address as Address
from shirushi.responder.address import Fixed as Fixed
from shirushi.responder.address import Locator as Locator
from shirushi.responder.address import redact as redact
from shirushi.responder.respwire import FAILED, ProtocolError, Reply, RespError, command, parse_reply

log = logging.getLogger("shirushi.responder")

Callback = Callable[[Reply], None]
MAX_PENDING: Final = 20000
ROLE: Final = command(b"ROLE")
ROLE_CHECK_EVERY: Final = 1.0  # seconds between checks that a located node still has its role


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
        self.aborting = False  # abort() called: replies still buffered are not delivered
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
            while pos < len(buf) and not self.aborting:
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
        self.aborting = True
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
        address: Address | Locator,
        timeout: float,
        name: str = "redis",
        on_push: Callable[[Reply], None] | None = None,
        on_up: Callable[[Connection], None] | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.locator: Locator = Fixed(address) if isinstance(address, Address) else address
        self.timeout = timeout
        self.name = name
        self.conn: Connection | None = None
        self.at: Address | None = None  # where conn is connected
        self._role_checked = 0.0
        self._moving = False  # conn was left on purpose: reconnect at once, no warning
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
        self.locator.follow(self)

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
        address: Address | None = None
        try:
            address = await asyncio.wait_for(self.locator.locate(), self.timeout)
            await asyncio.wait_for(address.open(self.loop, lambda: conn), self.timeout)
        except (TimeoutError, OSError) as exc:
            if address is not None:
                self.locator.lost(address)
            self._failed(exc, address)
            return
        finally:
            self._connecting = False
        if self._stopped:
            conn.abort()
            return
        self.conn = conn
        self.at = address
        self.connects += 1
        for cmd in address.handshake(select_db=self._on_push is None):
            conn.send(cmd, self._check_handshake)
        if address.role is not None:
            self._role_checked = self.loop.time()
            conn.send(ROLE, self._check_role)
        self._backoff = 0.05
        if not self._was_up:
            log.info("%s: connected to %s", self.name, address.where)
            self._was_up = True
        if self._on_up is not None:
            self._on_up(conn)

    def _check_handshake(self, value: Reply) -> None:
        if isinstance(value, RespError):
            log.error("%s: %s", self.name, value.message.decode("utf-8", "replace"))
            if self.conn is not None:
                self.conn.abort()

    def _check_role(self, value: Reply) -> None:
        at = self.at
        if value is FAILED or at is None or at.role_ok(value):
            return
        got = value[0].decode("ascii", "replace") if isinstance(value, list) and value else repr(value)
        log.warning("%s: %s is %s now, not %s; looking again", self.name, at.where, got, (at.role or b"").decode())
        self.reroute()

    def reroute(self) -> None:
        """Leave this node (a wrong role, READONLY, LOADING): the next connect locates again."""
        conn, at = self.conn, self.at
        if at is not None:
            self.locator.lost(at)
        if conn is not None:
            conn.abort()

    def moved(self, address: Address) -> None:
        """The locator chose `address`: leave another node at once, (re)connect without backoff."""
        if self.conn is not None:
            if address.same_node(self.at):
                return
            log.info("%s: leaving %s for %s", self.name, self.at.where if self.at else "?", address.where)
            self._moving = True
            self.conn.abort()
        self._backoff = 0.05
        self._next_attempt = 0.0
        self.kick()

    def _failed(self, exc: BaseException, address: Address | None) -> None:
        if self._was_up or self._backoff == 0.05:
            where = f" to {address.where}" if address is not None else ""
            log.warning("%s: cannot connect%s (%s); answering tryLater meanwhile", self.name, where, exc or "timeout")
        self._was_up = False
        self._next_attempt = self.loop.time() + self._backoff
        self._backoff = min(self._backoff * 2, 1.0)

    def _lost(self, conn: Connection) -> None:
        if self.conn is conn:
            self.conn = None
            if self.at is not None:
                self.locator.lost(self.at)
            if self._on_down is not None:
                self._on_down()
            if self._moving:
                self._moving = False
                self._next_attempt = 0.0
                self.loop.call_soon(self.kick)
            elif not self._stopped:
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
        elif self.at is not None and self.at.role is not None and now - self._role_checked >= ROLE_CHECK_EVERY:
            # A replica that lost its primary keeps answering from what it had, and a demoted
            # primary may go unannounced (no sentinel watched): leave either.
            self._role_checked = now
            if self._on_push is None:  # a subscribed connection accepts no ROLE; its twin checks
                conn.send(ROLE, self._check_role)

    def close(self) -> None:
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.conn is not None:
            self.conn.abort()
