"""The responder's parent process: forks `ocsp.workers` workers, restarts crashed ones, stops all.

Does process management and reads the issuer certificates. The parent holds the port (a bound,
non-listening SO_REUSEPORT socket) so that the address is checked before any worker starts and
stays reserved while a worker is restarted; each worker listens on its own socket of the same
port, and the kernel balances connections between them and any other `shirushi responder` on
the same address.

SIGHUP is passed on to the workers, which reopen the access log (`ocsp.access_log`, log rotation)
and reread the issuers (`reload.py`; they also do every few seconds).

`run()` must be called from the main thread of a process that has no other threads (it forks and
waits for signals with sigtimedwait); `shirushi serve` should give it a process of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shirushi.cache.connect import check as check_redis
from shirushi.config import Settings
from shirushi.config_values import parse_listen
from shirushi.errors import ServiceError
from shirushi.lifecycle import die_with_parent
from shirushi.metrics.registry import mark_process_dead, prepare_directory
from shirushi.responder.accesslog import access_log_path, check_writable
from shirushi.responder.issuers import IssuerMap
from shirushi.responder.reload import IssuerSource
from shirushi.responder.routing import Options
from shirushi.responder.worker import listen_socket, worker_main

log = logging.getLogger("shirushi.responder")

METRICS_SLOT = -1  # the slot of the metrics listener among the children
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}
START_TIMEOUT = 15.0
MAX_RESTARTS = 5  # within RESTART_WINDOW seconds, then the supervisor gives up
RESTART_WINDOW = 60.0


def run(
    settings: Settings,
    ready: Callable[[str, int], None] | None = None,
    options: Options | None = None,
) -> int:
    """Serve OCSP with `settings.ocsp.workers` processes until SIGTERM or SIGINT.

    `ready(host, port)` is called once every worker listens. Returns 0 after a clean stop, 1 when
    workers failed to start or kept crashing. Raises ConfigError, StateError or ServiceError,
    before starting anything, for a bad configuration, missing issuer certificates, an access log
    that cannot be opened or an address that cannot be bound.
    """
    options = options or Options()
    source = IssuerSource(settings)
    try:
        issuers = source.load()
    finally:
        source.close()  # no Redis connection crosses the fork
    check_redis(settings.redis, settings.redis_url)  # a ConfigError now, not in every worker
    access_log = access_log_path(settings)
    if access_log is not None:
        check_writable(access_log)
    host, port = parse_listen(settings.ocsp.listen)
    try:
        reserve = listen_socket(host, port, backlog=None)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {settings.ocsp.listen}: {exc.strerror or exc}") from None
    port = reserve.getsockname()[1]
    if settings.metrics.listen and not options.exit_with_parent:
        # Before prometheus_client is imported, in this process and so in the forked workers.
        prepare_directory(metrics_directory(settings))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        supervisor = _Supervisor(settings, issuers, options, port, reserve.fileno())
        return supervisor.run(lambda: ready(host, port) if ready is not None else None)
    finally:
        reserve.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


class _Supervisor:
    def __init__(self, settings: Settings, issuers: IssuerMap, options: Options, port: int, reserve_fd: int) -> None:
        self.settings = settings
        self.issuers = issuers
        self.options = options
        self.port = port
        self.reserve_fd = reserve_fd
        self.workers: dict[int, int] = {}  # pid -> worker slot
        # Under `serve` the backend serves the metrics of every process; alone, a child of ours.
        self.serves_metrics = bool(settings.metrics.listen) and not options.exit_with_parent
        self.restarts: list[float] = []

    def spawn(self, slot: int) -> tuple[int, int]:
        """Fork a worker; returns (pid, read end of its readiness pipe)."""
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                os.close(self.reserve_fd)
                if slot == METRICS_SLOT:
                    code = metrics_main(self.settings, self.port, write_fd, parent)
                else:
                    code = worker_main(self.settings, self.issuers, self.options, self.port, write_fd, parent)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                # _exit: the worker must not run the parent's atexit handlers or finalizers.
                os._exit(code)
        os.close(write_fd)
        self.workers[pid] = slot
        return pid, read_fd

    def run(self, ready: Callable[[], None]) -> int:
        pipes: dict[int, int] = {}
        slots = list(range(self.settings.ocsp.workers))
        if self.serves_metrics:
            slots.append(METRICS_SLOT)
        for slot in slots:
            pid, fd = self.spawn(slot)
            pipes[fd] = pid
        started = self._await_ready(pipes)
        if started != "ready":
            self.stop()
            # A stop asked for during start-up is an orderly stop, not a failure.
            return 0 if started == "stopped" else 1
        log.info(
            "responder listening on %s (port %d), %d worker(s)",
            self.settings.ocsp.listen,
            self.port,
            sum(1 for slot in self.workers.values() if slot != METRICS_SLOT),
        )
        ready()
        parent = os.getppid()
        while True:
            info = signal.sigtimedwait(_SIGNALS, 1.0)
            if info is None:
                if self.options.exit_with_parent and os.getppid() != parent:
                    log.warning("the process that started the responder is gone; stopping")
                    self.stop()
                    return 0
                continue
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.stop()
                return 0
            if info.si_signo == signal.SIGHUP:
                for pid in self.workers:
                    _kill(pid, signal.SIGHUP)
                continue
            if not self._reap_and_restart():
                self.stop()
                return 1

    def _await_ready(self, pipes: dict[int, int]) -> str:
        """ "ready" once every child said so; "stopped" on SIGTERM/SIGINT first; else "failed"."""
        deadline = time.monotonic() + START_TIMEOUT
        result = "ready"
        while pipes:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("responder workers did not start within %.0f s", START_TIMEOUT)
                result = "failed"
                break
            if signal.sigtimedwait((signal.SIGTERM, signal.SIGINT), 0) is not None:
                result = "stopped"
                break
            readable, _, _ = select.select(list(pipes), [], [], min(left, 0.1))
            for fd in readable:
                data = os.read(fd, 1)
                os.close(fd)
                pid = pipes.pop(fd)
                if data != b"R":
                    log.error("responder worker %d failed to start", pid)
                    result = "failed"
        for fd in pipes:
            os.close(fd)
        return result

    def _reap_and_restart(self) -> bool:
        """Collect exited workers and replace them; False when they crash too often."""
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            slot = self.workers.pop(pid)
            mark_process_dead(pid)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
            if len(self.restarts) > MAX_RESTARTS:
                log.error("responder workers keep exiting; giving up")
                return False
            log.warning("responder worker %d exited (%s); starting a new one", pid, _describe(status))
            _, fd = self.spawn(slot)
            os.close(fd)  # the worker's readiness write then fails harmlessly
        return True

    def stop(self) -> None:
        """SIGTERM every worker, wait for them, SIGKILL the ones that do not stop in time."""
        for pid in self.workers:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.options.linger + 3.0
        while self.workers and time.monotonic() < deadline:
            for pid in list(self.workers):
                if os.waitpid(pid, os.WNOHANG)[0] != 0:
                    del self.workers[pid]
            if self.workers:
                signal.sigtimedwait((signal.SIGCHLD,), 0.05)
        for pid in self.workers:
            log.warning("responder worker %d did not stop; killing it", pid)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.workers.clear()


def metrics_directory(settings: Settings) -> Path:
    return settings.data_path / "metrics-responder"


def metrics_main(settings: Settings, port: int, ready_fd: int, parent: int) -> int:
    """The metrics listener of a lone responder: every worker's values, Redis and port checks."""
    die_with_parent(signal.SIGTERM, parent)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # passed on for the workers' access logs
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    from shirushi.cache.connect import sync_client
    from shirushi.metrics.http import MetricsServer, port_accepts, redis_answers
    from shirushi.metrics.scrape import exposition

    host, _ = parse_listen(settings.ocsp.listen)
    if settings.redis.mode == "cluster":
        from shirushi.cache import cluster

        # Made at the first check, so the listener starts while the cluster is down.
        client: object = cluster.Pinger(settings.redis)
    else:
        client = sync_client(settings.redis, settings.redis_url, for_reads=True)
    checks = {
        "redis": redis_answers(client),
        "ocsp": port_accepts(f"{host}:{port}"),
    }
    try:
        server = MetricsServer(settings.metrics.listen, exposition(metrics_directory(settings)), checks)
    except OSError as exc:
        log.error("cannot listen on metrics.listen %s: %s", settings.metrics.listen, exc.strerror or exc)
        return 1
    with contextlib.suppress(OSError):
        os.write(ready_fd, b"R")
        os.close(ready_fd)
    server.httpd.serve_forever()
    return 0


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"
