"""One responder worker process: a uvloop event loop serving one SO_REUSEPORT socket.

Does network I/O. Several workers (and several `shirushi responder` instances) bind the same
address; the kernel spreads connections over them. A worker holds no keys and no database:
only the issuer map, a Redis connection, and (optionally) the invalidation subscription.
SIGTERM or SIGINT stop it gracefully: the socket closes, answers in flight are finished for up to
`Options.linger` seconds, then every connection is closed and the access log (when
`ocsp.access_log` is set) is flushed. SIGHUP reopens the access log (log rotation) and rereads
the issuers, which are also reread every few seconds (`reload.py`): a new CA without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import urllib.parse
from collections.abc import Callable

import uvloop

from shirushi.cache.connect import hot_locator
from shirushi.config import Settings
from shirushi.config_values import parse_listen
from shirushi.lifecycle import die_with_parent
from shirushi.responder.accesslog import AccessLog, access_log_path
from shirushi.responder.address import Address, Locator
from shirushi.responder.heap import Heap
from shirushi.responder.issuers import IssuerMap
from shirushi.responder.live_client import LiveClient
from shirushi.responder.lookup import Lookup
from shirushi.responder.reload import RELOAD_EVERY, IssuerSource
from shirushi.responder.request import path_prefix
from shirushi.responder.routing import Options, Responder, memo_entries
from shirushi.responder.server import HTTPConnection

log = logging.getLogger("shirushi.responder")

TICK = 0.25  # seconds between clock refreshes and timeout sweeps


def listen_socket(host: str, port: int, backlog: int | None = 2048) -> socket.socket:
    """A TCP socket with SO_REUSEPORT bound to (host, port); listening unless backlog is None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def build_responder(
    settings: Settings, issuers: IssuerMap, loop: asyncio.AbstractEventLoop, options: Options
) -> Responder:
    cluster = None
    if settings.redis.mode == "cluster":
        from shirushi.responder.cluster_client import cluster_lookup_parts

        address = Address(settings.redis_url)  # the data nodes' password and TLS, if any
        cluster = cluster_lookup_parts(loop, settings.redis.node_addresses, address, settings.redis.timeout)
        where: Address | Locator = address
    else:
        where = hot_locator(settings.redis, settings.redis_url, loop)
    lookup = Lookup(
        loop,
        where,
        settings.redis.timeout,
        l1_bytes=options.cache_bytes(settings.ocsp.cache_mb),
        l1_max_age=options.l1_max_age,
        live=LiveClient(loop, settings.ocsp.live_socket_path(settings.data_path), settings.ocsp.live_timeout),
        cluster=cluster,
    )
    prefix = path_prefix(urllib.parse.urlsplit(settings.ocsp.url).path)
    max_age = int(settings.ocsp.max_age.total_seconds())
    path = access_log_path(settings)
    access_log = AccessLog(path, loop) if path is not None else None
    return Responder(
        issuers,
        lookup,
        prefix,
        max_age,
        settings.ocsp.max_request_bytes,
        options,
        access_log,
        memo_entries(options.cache_bytes(settings.ocsp.cache_mb)),
    )


async def serve(
    settings: Settings,
    issuers: IssuerMap,
    options: Options,
    port: int,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    *,
    own_heap: bool = False,
) -> None:
    """Serve on `port` until SIGTERM/SIGINT, or until `stop` is set when one is given.

    `on_ready(port)` is called once the socket listens (the actual port when 0 was asked).
    `own_heap`: the process is this worker's alone, so its collector follows `heap.Heap`.
    """
    loop = asyncio.get_running_loop()
    host, _ = parse_listen(settings.ocsp.listen)
    responder = build_responder(settings, issuers, loop, options)
    access_log = responder.access_log
    if access_log is not None:
        access_log.open()  # OSError: the worker fails to start (the supervisor checked the path)
    reload_now = asyncio.Event()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        # SIGHUP: reopen the access log (logrotate) and reread the issuers now.
        def on_hup() -> None:
            if access_log is not None:
                access_log.reopen()
            reload_now.set()

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        # The supervisor forks with these signals blocked so that none arrives before a
        # handler is in place; a signal sent meanwhile is delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP))
    lookup = responder.lookup
    await lookup.start_and_wait(settings.redis.timeout)
    sock = listen_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = await loop.create_server(lambda: HTTPConnection(responder), sock=sock)

    heap = Heap(loop.time()) if own_heap else None

    def tick() -> None:
        if heap is not None:
            heap.tick(loop.time())
        responder.refresh_clock()
        responder.sweep()
        lookup.check(loop.time())  # the clock of Connection.last_progress
        responder.tally.flush(lookup)
        ticker[0] = loop.call_later(TICK, tick)

    ticker = [loop.call_later(TICK, tick)]
    reloading = asyncio.create_task(_follow_issuers(settings, responder, reload_now))
    try:
        if on_ready is not None:
            on_ready(bound_port)
        await stop.wait()
    finally:
        server.close()
        # Let answers waiting for Redis go out, then close everything.
        deadline = loop.time() + options.linger
        while any(c.waiting for c in responder.connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(responder.connections):
            if conn.transport is not None:
                conn.transport.close()
        ticker[0].cancel()
        responder.tally.flush(lookup)
        reloading.cancel()
        lookup.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)
        if access_log is not None:
            access_log.close()


async def _follow_issuers(settings: Settings, responder: Responder, now: asyncio.Event) -> None:
    """Reread the issuers every RELOAD_EVERY seconds, or at once when `now` is set (SIGHUP)."""
    source = IssuerSource(settings)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(now.wait(), RELOAD_EVERY)
            now.clear()
            issuers = await asyncio.to_thread(source.changed)
            if issuers is not None:
                responder.set_issuers(issuers)
    finally:
        source.close()


def worker_main(settings: Settings, issuers: IssuerMap, options: Options, port: int, ready_fd: int, parent: int) -> int:
    """Entry point of a worker forked by `parent`; returns its exit status."""
    # SIGTERM when the supervisor dies, even by SIGKILL: an orphaned worker would keep its
    # SO_REUSEPORT socket and keep answering beside the workers of a restarted responder.
    die_with_parent(signal.SIGTERM, parent)

    def ready(port: int) -> None:
        try:
            os.write(ready_fd, b"R")
            os.close(ready_fd)
        except OSError:
            pass

    try:
        uvloop.run(serve(settings, issuers, options, port, ready, own_heap=True))
    except OSError as exc:
        log.error("responder worker %d: %s", os.getpid(), exc)
        return 1
    except Exception:
        log.exception("responder worker %d failed", os.getpid())
        return 1
    return 0
