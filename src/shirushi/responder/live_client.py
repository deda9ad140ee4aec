"""A responder worker's link to the backend's live-signing service. Does unix-socket I/O.

One connection per worker, opened on the first miss and kept. Requests for a key already asked
for wait for the same reply (one request on the wire per key). Every request has a deadline
(`ocsp.live_timeout`), swept by the worker's ticker: past it the caller gets TRY_LATER, so a
stalled backend never holds an answer longer than that.

What a caller gets (`livewire` statuses, plus `ABSENT`):

* the service's reply: OK with a packed record, UNKNOWN, TRY_LATER, NOT_MINE;
* ABSENT at once when there is no socket file (no live signer on this host: a standalone
  responder, or `ocsp.live_rate = 0`): the caller applies its rule for a cache without one;
* TRY_LATER at once while the socket refuses (the backend died, or is restarting): retried after
  `RETRY_AFTER`, so a dead backend costs one failed connect per interval, not one per request.

Imports nothing that signs: the protocol module is pure.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final, cast

from shirushi.cache import livewire

log = logging.getLogger("shirushi.responder")

ABSENT: Final = -1
RETRY_AFTER: Final = 0.5
MAX_WAITING: Final = 4096  # distinct keys in flight per worker; past it, tryLater at once

Reply = Callable[[int, bytes], None]


class _Conn(asyncio.Protocol):
    def __init__(self, client: LiveClient) -> None:
        self.client = client
        self.decoder = livewire.Decoder(livewire.MAX_REPLY)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self.decoder.feed(data):
                self.client.replied(*livewire.parse_reply(payload))
        except livewire.ProtocolError as exc:
            log.error("live signing service: %s", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.lost(self)


class LiveClient:
    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, timeout: float) -> None:
        self.loop = loop
        self.path = path
        self.timeout = timeout
        self.conn: _Conn | None = None
        self.connecting = False
        self.down_until = 0.0
        self.down_status = livewire.TRY_LATER
        self.next_id = 0
        # key -> (request id, deadline, callers); id -> key
        self.waiting: dict[bytes, tuple[int, float, list[Reply]]] = {}
        self.ids: dict[int, bytes] = {}
        self.unsent: list[bytes] = []  # keys asked while connecting
        self.asked = 0  # requests sent (for tests and figures)

    def ask(self, key: bytes, reply: Reply) -> int | None:
        """Ask for `key`: None when `reply(status, record)` will be called, else a status now."""
        entry = self.waiting.get(key)
        if entry is not None:
            entry[2].append(reply)
            return None
        if self.conn is None and not self.connecting:
            if self.loop.time() < self.down_until:
                return self.down_status
            self._connect()
        if len(self.waiting) >= MAX_WAITING:
            return livewire.TRY_LATER
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        self.waiting[key] = (self.next_id, self.loop.time() + self.timeout, [reply])
        self.ids[self.next_id] = key
        if self.conn is not None and self.conn.transport is not None:
            self._send(key)
        else:
            self.unsent.append(key)
        return None

    def _send(self, key: bytes) -> None:
        entry = self.waiting.get(key)
        if entry is not None and self.conn is not None and self.conn.transport is not None:
            self.asked += 1
            self.conn.transport.write(livewire.request(entry[0], key))

    def _connect(self) -> None:
        self.connecting = True
        self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_unix_connection(lambda: _Conn(self), str(self.path)), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            self.connecting = False
            absent = isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR)
            self._down(ABSENT if absent else livewire.TRY_LATER)
            return
        self.connecting = False
        self.conn = conn
        unsent, self.unsent = self.unsent, []
        for key in unsent:
            self._send(key)

    def _down(self, status: int) -> None:
        """No service: everything waiting gets `status`, and so does every ask for a while."""
        self.down_until = self.loop.time() + RETRY_AFTER
        self.down_status = status
        self.unsent.clear()
        waiting, self.waiting = self.waiting, {}
        self.ids.clear()
        for _, _, replies in waiting.values():
            for reply in replies:
                reply(status, b"")

    def replied(self, request_id: int, status: int, record: bytes) -> None:
        key = self.ids.pop(request_id, None)
        if key is None:
            return  # answered after its deadline: already told tryLater
        _, _, replies = self.waiting.pop(key)
        for reply in replies:
            reply(status, record)

    def lost(self, conn: _Conn) -> None:
        if self.conn is conn:
            self.conn = None
            self._down(livewire.TRY_LATER)

    def check(self, now: float) -> None:
        """From the worker's ticker: requests past their deadline are answered tryLater."""
        late = [key for key, (_, deadline, _) in self.waiting.items() if deadline <= now]
        for key in late:
            request_id, _, replies = self.waiting.pop(key)
            self.ids.pop(request_id, None)
            for reply in replies:
                reply(livewire.TRY_LATER, b"")

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None
