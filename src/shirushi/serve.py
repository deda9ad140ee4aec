"""`shirushi serve`: everything in one command. Starts processes and servers.

Start-up order (the OCSP port opens as soon as every answer it gives is correct):
1. the embedded redis-server when `redis.url` is empty and `redis.mode` is "single";
2. catch up on committed work (outbox), renew the OCSP signer if due;
3. publish CRLs when none is current, so the CDP URLs always answer;
4. open the live-signing socket (`presign/live_service.py`): from now on a response missing from
   Redis is signed on demand when a responder asks for it;
5. start the responder worker processes (fresh interpreters: they import no key code and hold no
   keys) -- the OCSP port opens;
6. presign every certificate unless the cache says it is complete, in the background, serials
   relying parties asked for first (`Presigner.full_load`);
7. serve the repository, the API and the control socket (the CLI's `issue` and `revoke`,
   control/), and run the schedules (outbox, presign refresh, CRLs, signer renewal, records
   retention) until SIGTERM/SIGINT, then stop everything.

Several backends may share one PostgreSQL database: all of them issue, revoke and answer, and
the schedules (and the signer renewal and full presign at start) run on the one the database
elects (`leader.py`); another takes over within 30 s when it dies. On SQLite this `serve` is
the only one and always leads.

With `ocsp.live_rate = 0` there is no live signing and a miss is `tryLater` until the refill has
finished (the responder's rule without a signer), as before.

SIGTERM/SIGINT act at any step: the long jobs (full presign, refill, refresh) check the stop
token between batches, committed work stays in the store and what is not done is left to the
next start (outbox, cache completion marker). Every child process also dies with `serve` when it
is killed (`lifecycle.die_with_parent`). The time from the signal to the exit is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import uvicorn

from shirushi.backend import Backend
from shirushi.ca.hierarchy import ISSUING, ROOT, load_hierarchy
from shirushi.ca.ocsp_signer import renew_ocsp_signer_if_due
from shirushi.cache.embedded import EmbeddedRedis
from shirushi.config import Settings
from shirushi.config_values import parse_listen
from shirushi.errors import ServiceError, ShirushiError
from shirushi.leader import Election, LeaderCollector, Leadership, leadership_for
from shirushi.lifecycle import Stopped, check_stop, stop_resource_tracker
from shirushi.logs import configure as configure_logging
from shirushi.logs import say_via
from shirushi.metrics.http import MetricsServer, port_accepts, redis_answers
from shirushi.metrics.registry import prepare_directory
from shirushi.presign.live import Asked, LiveSigner, TokenBucket
from shirushi.presign.live_service import LiveService
from shirushi.schedules import Scheduler
from shirushi.serve_process import StopSignal, serve_lock

log = logging.getLogger("shirushi.serve")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(app: Any, listen: str) -> _Server:
    host, port = parse_listen(listen)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=5,
        limit_concurrency=1000,
        server_header=False,
        timeout_graceful_shutdown=5,  # then open connections are closed: a stop never hangs on a peer
    )
    return _Server(config)


def start_responders(config_path: str | None, settings: Settings) -> subprocess.Popen[bytes]:
    """Start `shirushi responder` as a fresh interpreter: it imports no key code."""
    env = dict(os.environ)
    env["SHIRUSHI_DATA_DIR"] = str(settings.data_path)
    if settings.redis.mode == "single":
        env["SHIRUSHI_REDIS__URL"] = settings.redis_url  # the embedded server's socket, when url is ""
    args = [sys.executable, "-m", "shirushi"]
    if config_path:
        args += ["--config", str(Path(config_path).resolve())]
    # Its own session: a Ctrl-C at the terminal reaches `serve`, which stops the responders.
    # With serve's PID it stops (SIGTERM, from Linux) when serve dies, even by SIGKILL.
    return subprocess.Popen(
        [*args, "responder", "--exit-with-parent", str(os.getpid())],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


async def start_live_service(settings: Settings, backend: Backend) -> LiveService | None:
    """Step 4: the live-signing socket, unless `ocsp.live_rate` is 0."""
    rate = settings.ocsp.live_rate
    if rate <= 0:
        return None
    presigner = backend.presigner
    signer = LiveSigner(presigner, TokenBucket(rate, rate, time.monotonic()), Asked(), time.monotonic)
    presigner.asked = signer.asked  # the refill signs what was asked for first
    service = LiveService(signer, settings.ocsp.live_socket_path(settings.data_path))
    await service.start()
    return service


def prepare(backend: Backend, say: Callable[[str], None], stop: threading.Event, *, leading: bool = True) -> None:
    """Steps 2 and 3 of the start-up order; raises Stopped when `stop` is set meanwhile.

    A backend that is not the leader leaves the signer renewal to the leader (one new signer
    certificate, not one per backend); the rest is safe on every backend: the outbox work is
    idempotent and CRL numbers come from the database under its lock."""
    # Signer renewal, presign runs and CRL publications log their own lines.
    load_hierarchy(backend.settings)
    log.info("startup", extra={"step": "hierarchy", "data_dir": str(backend.settings.data_path)})
    # Lint workers start (and build pkilint's validators, seconds of CPU) once, while the rest
    # of the start goes on: the OCSP port does not wait for them (an early issuance does).
    from shirushi.ca.lint_pool import LintPool

    backend.use_lint_pool(LintPool(wait=False))
    # A wrong ca.weak_key_lists file stops the start, not the first issuance (BR 6.1.1.3).
    listed = len(backend.authority.weak_keys().lists)
    log.info("startup", extra={"step": "weak key lists", "fingerprints": listed})
    if leading:
        renew_ocsp_signer_if_due(backend.settings, backend.store, backend.keys, backend.clock)
    pending = backend.drain_outbox()
    for item in pending:
        say(f"warning: pending: {item}")
    log.info("startup", extra={"step": "outbox", "pending": len(pending)})
    check_stop(stop)
    backend.presigner.context()  # the signer and its certificate load now: a bad one stops the start
    # Outside CAs (`issuer add`): responders learn of them from Redis, which may have lost them.
    from shirushi.outside.registry import publish_all, renewal_due

    publish_all(backend.settings, backend.store, backend.redis)
    for warning in renewal_due(backend.settings, backend.store, backend.keys, backend.clock.now()):
        log.warning("outside signer renewal due", extra={"detail": warning})
    for name in (ISSUING, ROOT):
        for shard in backend.crls.stale(name):
            check_stop(stop)
            backend.crls.generate(name, scheduled=True, shard=shard)
    log.info("startup", extra={"step": "crl", "current": True})


async def _main(
    settings: Settings, backend: Backend, config_path: str | None, say: Callable[[str], None], signals: StopSignal
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        signals(signum)
        stop.set()

    for sig in StopSignal.SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    state = _State()
    metrics_server = start_metrics(settings, backend, state)
    try:
        return await _run(settings, backend, config_path, say, signals, stop, state)
    finally:
        if metrics_server is not None:
            metrics_server.stop()


class _State:
    """What /readyz needs to know about this `serve`: start-up done, responders running."""

    def __init__(self) -> None:
        self.started = False
        self.responders: subprocess.Popen[bytes] | None = None
        self.election: Election | None = None

    def leading(self) -> bool:
        return self.election is not None and self.election.leading

    def check_started(self) -> str | None:
        return None if self.started else "starting up (presign, CRLs)"

    def check_responders(self) -> str | None:
        if self.responders is None:
            return "not started yet"
        code = self.responders.poll()
        return None if code is None else f"exited with status {code}"


def start_metrics(settings: Settings, backend: Backend, state: _State) -> MetricsServer | None:
    """The metrics listener, up from the start so that /healthz answers while `serve` prepares."""
    if not settings.metrics.listen:
        return None
    from shirushi.metrics.scrape import BackendCollector, exposition

    def database() -> str | None:
        backend.store.ping()
        return None

    checks = {
        "startup": state.check_started,
        "database": database,
        "redis": redis_answers(backend.redis),
        "responders": state.check_responders,
        "ocsp": port_accepts(settings.ocsp.listen),
    }
    try:
        server = MetricsServer(
            settings.metrics.listen,
            exposition(metrics_directory(settings), [BackendCollector(backend), LeaderCollector(state.leading)]),
            checks,
        )
    except OSError as exc:
        raise ServiceError(
            f"cannot listen on metrics.listen {settings.metrics.listen}: {exc.strerror or exc}"
        ) from None
    server.start()
    log.info("startup", extra={"step": "metrics", "listen": settings.metrics.listen})
    return server


def metrics_directory(settings: Settings) -> Path:
    return settings.data_path / "metrics"


async def _run(
    settings: Settings,
    backend: Backend,
    config_path: str | None,
    say: Callable[[str], None],
    signals: StopSignal,
    stop: asyncio.Event,
    state: _State,
) -> int:
    leadership = leadership_for(backend.store.engine)
    try:
        return await _lead_or_follow(settings, backend, config_path, say, signals, stop, state, leadership)
    finally:
        await asyncio.to_thread(leadership.close)  # another backend can take over at once


async def _lead_or_follow(
    settings: Settings,
    backend: Backend,
    config_path: str | None,
    say: Callable[[str], None],
    signals: StopSignal,
    stop: asyncio.Event,
    state: _State,
    leadership: Leadership,
) -> int:
    try:
        leading = await asyncio.to_thread(leadership.try_acquire)
        await asyncio.to_thread(prepare, backend, say, signals.token, leading=leading)
    except Stopped:
        return 0
    except (ShirushiError, BrokenProcessPool) as exc:
        if not signals.token.is_set():
            raise
        # Stopped by a signal sent to every process (systemd's KillMode=control-group): Redis
        # went away under the presign. Nothing is lost; the next start does it again.
        log.warning("startup interrupted by the stop", extra={"error": str(exc)})
        return 0
    if signals.token.is_set():
        return 0
    live = await start_live_service(settings, backend)
    responders = state.responders = start_responders(config_path, settings)
    state.started = True
    log.info("startup", extra={"step": "responders", "responder_pid": responders.pid, "workers": settings.ocsp.workers})
    from shirushi.web.api import create_app as create_api
    from shirushi.web.repository import create_app as create_repository

    servers = [
        _uvicorn(create_repository(settings, backend.clock), settings.repository.listen),
        _uvicorn(create_api(backend), settings.api.listen),
    ]
    if settings.acme.listen:
        from shirushi.acme.app import create_app as create_acme

        servers.append(_uvicorn(create_acme(backend), settings.acme.listen))
    serving = [asyncio.create_task(s.serve()) for s in servers]
    from shirushi.control.server import ControlServer

    control = ControlServer(backend)  # the CLI's `issue` and `revoke` from now on (control/)
    await control.start()
    scheduler = Scheduler(backend, signals.token)
    election = state.election = Election(leadership, scheduler.lead, scheduler.step_down)
    if leading:
        election.elected()
    tasks = [asyncio.create_task(election.run())]
    log.info(
        "serving",
        extra={
            "ocsp": settings.ocsp.url,
            "repository": settings.repository.url,
            "api": f"http://{settings.api.listen}/",
            "acme": f"{settings.acme.base_url()}directory" if settings.acme.listen else "off",
        },
    )
    exit_code = 0
    try:
        while not stop.is_set():
            if responders.poll() is not None:
                say(f"error: the OCSP responder exited with status {responders.returncode}")
                exit_code = 1
                break
            if any(t.done() for t in serving):
                say("error: the repository, API or ACME server stopped (is the port in use?)")
                exit_code = 1
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    finally:
        signals.token.set()  # a job running in a thread stops at its next batch, on any exit
        await control.close()  # a CLI command from now on runs in its own process
        for task in tasks:
            task.cancel()
        scheduler.step_down()
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*serving, *tasks, *scheduler.running, return_exceptions=True)
        if live is not None:
            await live.close()
        if responders.poll() is None:
            responders.terminate()
            try:
                await asyncio.to_thread(responders.wait, 10)
            except subprocess.TimeoutExpired:
                responders.kill()
    return exit_code


def serve(settings: Settings, config_path: str | None = None, say: Callable[[str], None] | None = None) -> int:
    configure_logging(settings.log.format, settings.log.level)
    say = say or say_via(log)
    signals = StopSignal()
    signals.install()
    try:
        with serve_lock(settings.data_path):
            return _serve(settings, config_path, say, signals)
    finally:
        signals.report()


def _serve(settings: Settings, config_path: str | None, say: Callable[[str], None], signals: StopSignal) -> int:
    if settings.metrics.listen:
        # Before anything imports prometheus_client; the responders and presign workers inherit
        # it. Under the serve lock: the directory belongs to this run alone.
        prepare_directory(metrics_directory(settings))
    embedded = None
    # Sentinel or Cluster: the operator runs Redis; there is nothing to embed (docs/deploy.md).
    if settings.redis.mode == "single" and not settings.redis.url:
        # Started before any other thread exists: it is tied to this process in a preexec_fn.
        embedded = EmbeddedRedis(settings.layout)
        embedded.start()
        log.info("startup", extra={"step": "embedded redis", "socket": str(settings.layout.redis_socket)})
    backend = Backend(settings)
    try:
        if signals.token.is_set():
            return 0
        try:
            import uvloop

            return uvloop.run(_main(settings, backend, config_path, say, signals))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            return asyncio.run(_main(settings, backend, config_path, say, signals))
    finally:
        signals.install()  # the closed loop put the default handlers back; a second signal waits
        backend.close()
        if embedded is not None:
            embedded.stop()
        stop_resource_tracker()
