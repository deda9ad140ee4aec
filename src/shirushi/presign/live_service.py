"""The backend's live-signing service: a unix socket the responders ask when Redis misses a record.

Runs on `serve`'s event loop (socket I/O); the store read and the signatures run in a small
thread pool (`LiveSigner.answer_many`), each thread taking what queued meanwhile as one batch (up
to `BATCH` keys), so a burst of misses costs one store query and one Redis write per batch, not
per key. Concurrent requests for the same key, from any number of responder connections, share
one answer (one signature). At most `MAX_PENDING` distinct keys are queued or in work at once;
past that a request is answered `tryLater` at once rather than queued, so the wait a responder
sees stays bounded. The socket file is created mode 0600 in a directory only the service's user
reaches (`data_dir`): the responders run as that user, nobody else can ask for a signature. A
line with the counts is logged every `REPORT_EVERY` seconds in which something happened.

The protocol is `cache/livewire.py`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import stat
from pathlib import Path
from typing import Final, cast

from shirushi.cache import livewire
from shirushi.presign.live import LiveSigner

log = logging.getLogger("shirushi.presign")

MAX_PENDING: Final = 256
THREADS: Final = 2
BATCH: Final = 64
REPORT_EVERY: Final = 1.0


class _Peer(asyncio.Protocol):
    """One responder connection: frames in, replies out (in completion order, by id)."""

    def __init__(self, service: LiveService) -> None:
        self.service = service
        self.decoder = livewire.Decoder(livewire.MAX_REQUEST)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self.decoder.feed(data):
                request_id, key = livewire.parse_request(payload)
                self.service.ask(key, self, request_id)
        except livewire.ProtocolError as exc:
            log.warning("live signing: bad request", extra={"error": str(exc)})
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def send(self, request_id: int, status: int, record: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(livewire.reply(request_id, status, record))


class LiveService:
    def __init__(self, signer: LiveSigner, path: Path) -> None:
        self.signer = signer
        self.path = path
        self.waiting: dict[bytes, list[tuple[_Peer, int]]] = {}  # queued or in work
        self.queued: list[bytes] = []
        self.running = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="live-sign")
        self.server: asyncio.AbstractServer | None = None
        self.reporter: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A socket left by a serve that was killed: one serve per data_dir holds the lock, so
        # nobody else is listening on it. Anything but a socket is not ours to remove.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        old = os.umask(0o177)
        try:
            self.server = await self.loop.create_unix_server(lambda: _Peer(self), str(self.path))
        finally:
            os.umask(old)
        self.reporter = asyncio.create_task(self._report())
        log.info("startup", extra={"step": "live signing", "socket": str(self.path)})

    def ask(self, key: bytes, peer: _Peer, request_id: int) -> None:
        waiters = self.waiting.get(key)
        if waiters is not None:
            waiters.append((peer, request_id))  # the same key queued or in work: share its answer
            return
        if len(self.waiting) >= MAX_PENDING:
            peer.send(request_id, livewire.TRY_LATER, b"")
            return
        self.waiting[key] = [(peer, request_id)]
        self.queued.append(key)
        self._run()

    def _run(self) -> None:
        """Hand what has queued to a free thread, as one batch (one store query, one write)."""
        assert self.loop is not None
        while self.queued and self.running < THREADS:
            batch, self.queued = self.queued[:BATCH], self.queued[BATCH:]
            self.running += 1
            future = self.loop.run_in_executor(self.pool, self.signer.answer_many, batch)
            future.add_done_callback(functools.partial(self._done, batch))

    def _done(self, batch: list[bytes], future: asyncio.Future[dict[bytes, tuple[int, bytes]]]) -> None:
        self.running -= 1
        answers: dict[bytes, tuple[int, bytes]] = {}
        if future.cancelled():
            pass
        elif future.exception() is not None:
            log.error("live signing failed", exc_info=future.exception())
        else:
            answers = future.result()
        for key in batch:
            status, record = answers.get(key, (livewire.TRY_LATER, b""))
            for peer, request_id in self.waiting.pop(key, []):
                peer.send(request_id, status, record)
        self._run()

    async def _report(self) -> None:
        last = dataclasses.replace(self.signer.counts)
        while True:
            await asyncio.sleep(REPORT_EVERY)
            now = dataclasses.replace(self.signer.counts)
            if now != last:
                log.info("live signing", extra={**dataclasses.asdict(now), "asked": len(self.signer.asked)})
                last = now

    async def close(self) -> None:
        if self.reporter is not None:
            self.reporter.cancel()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        self.pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
