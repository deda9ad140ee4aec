"""`shirushi serve`: everything in one command. Starts processes and servers.

Start-up order (so that nothing answers wrongly while it fills):
1. the embedded redis-server when `redis.url` is empty;
2. catch up on committed work (outbox), renew the OCSP signer if due, presign every certificate
   unless the cache says it is complete;
3. publish CRLs when none is current, so the CDP URLs always answer;
4. start the responder worker processes (fresh interpreters: they import no key code and hold no
   keys) -- only now does the OCSP port open;
5. serve the repository and the API, and run the schedules (outbox, presign refresh, CRLs,
   signer renewal) until SIGTERM/SIGINT, then stop everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from shirushi.backend import Backend
from shirushi.ca.authority import ISSUING, ROOT, load_hierarchy
from shirushi.cache.embedded import EmbeddedRedis
from shirushi.config import Settings, parse_duration, parse_listen
from shirushi.errors import ShirushiError, StateError

log = logging.getLogger("shirushi.serve")

OUTBOX_EVERY = 2.0  # seconds; revocations normally finish their follow-up inline
OUTBOX_GRACE = 10.0
REFRESH_EVERY = 60.0
SIGNER_CHECK_EVERY = 3600.0


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
    )
    return _Server(config)


class Scheduler:
    """Periodic jobs, one at a time in a worker thread (single-flight), with jitter."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.lock = asyncio.Lock()
        self.crl_every = parse_duration(self.settings.crl.interval).total_seconds()

    async def run_job(self, name: str, job: Callable[[], object]) -> None:
        async with self.lock:
            try:
                await asyncio.to_thread(job)
            except ShirushiError as exc:
                log.warning("%s failed: %s", name, exc)
            except Exception:
                log.exception("%s failed", name)

    async def every(self, name: str, seconds: float, job: Callable[[], object], *, jitter: float = 0.1) -> None:
        while True:
            await asyncio.sleep(seconds * (1 - random.uniform(0, jitter)))
            await self.run_job(name, job)

    def outbox_job(self) -> None:
        # Leave fresh work to the command that committed it (it follows up inline), so the two
        # do not both publish a CRL for the same revocation.
        self.backend.drain_outbox(min_age=OUTBOX_GRACE)

    def refresh_job(self) -> None:
        # A Redis that lost its data (restart without persistence, eviction) also lost the
        # completion marker: refill everything, then go on with what is due.
        self.backend.presigner.ensure_complete()
        self.backend.presigner.refresh_due()

    def crl_job(self) -> None:
        # Run a little more often than the interval so a CRL is never late (policy 4.9.7).
        for name in (ISSUING, ROOT):
            if not self.backend.crls.is_current(name):
                self.backend.crls.generate(name, scheduled=True)

    def signer_job(self) -> None:
        if self.backend.authority.renew_ocsp_signer_if_due() is not None:
            log.warning("OCSP signer certificate renewed")

    def tasks(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.every("outbox", OUTBOX_EVERY, self.outbox_job, jitter=0)),
            asyncio.create_task(self.every("presign refresh", REFRESH_EVERY, self.refresh_job)),
            asyncio.create_task(self.every("CRL", min(self.crl_every / 24, 3600), self.crl_job)),
            asyncio.create_task(self.every("signer renewal", SIGNER_CHECK_EVERY, self.signer_job)),
        ]


def start_responders(config_path: str | None, settings: Settings) -> subprocess.Popen[bytes]:
    """Start `shirushi responder` as a fresh interpreter: it imports no key code."""
    env = dict(os.environ)
    env["SHIRUSHI_DATA_DIR"] = str(settings.data_path)
    env["SHIRUSHI_REDIS__URL"] = settings.redis_url
    args = [sys.executable, "-m", "shirushi"]
    if config_path:
        args += ["--config", str(Path(config_path).resolve())]
    # Its own session: a Ctrl-C at the terminal reaches `serve`, which stops the responders.
    return subprocess.Popen(
        [*args, "responder", "--exit-with-parent"], env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )


def prepare(backend: Backend, say: Callable[[str], None]) -> None:
    """Steps 2 and 3 of the start-up order."""
    load_hierarchy(backend.settings)
    # Lint workers start (and build pkilint's validators) once, before the API opens.
    backend.use_lint_pool()
    if backend.authority.renew_ocsp_signer_if_due() is not None:
        say("renewed the OCSP signer certificate")
    pending = backend.drain_outbox()
    for item in pending:
        say(f"warning: pending: {item}")
    count = backend.presigner.ensure_complete()
    if count is not None:
        say(f"presigned OCSP responses for {count} certificate(s)")
    for name in (ISSUING, ROOT):
        if not backend.crls.is_current(name):
            published = backend.crls.generate(name, scheduled=True)
            say(f"published {published.path.name} number {published.number}")


async def _main(settings: Settings, backend: Backend, config_path: str | None, say: Callable[[str], None]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await asyncio.to_thread(prepare, backend, say)
    responders = start_responders(config_path, settings)
    from shirushi.web.api import create_app as create_api
    from shirushi.web.repository import create_app as create_repository

    servers = [
        _uvicorn(create_repository(settings, backend.clock), settings.repository.listen),
        _uvicorn(create_api(backend), settings.api.listen),
    ]
    serving = [asyncio.create_task(s.serve()) for s in servers]
    scheduler = Scheduler(backend)
    tasks = scheduler.tasks()
    say(f"serving: OCSP {settings.ocsp.url} repository {settings.repository.url} API http://{settings.api.listen}/")
    exit_code = 0
    try:
        while not stop.is_set():
            if responders.poll() is not None:
                say(f"error: the OCSP responder exited with status {responders.returncode}")
                exit_code = 1
                break
            if any(t.done() for t in serving):
                say("error: the repository or API server stopped (is the port in use?)")
                exit_code = 1
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    finally:
        for task in tasks:
            task.cancel()
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*serving, *tasks, return_exceptions=True)
        if responders.poll() is None:
            responders.terminate()
            try:
                await asyncio.to_thread(responders.wait, 10)
            except subprocess.TimeoutExpired:
                responders.kill()
    return exit_code


@contextlib.contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """One `serve` per data directory; the lock dies with the process, even on SIGKILL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "serve.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another `shirushi serve` is running on {data_dir}") from None
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


def serve(settings: Settings, config_path: str | None = None, say: Callable[[str], None] | None = None) -> int:
    say = say or (lambda line: print(line, flush=True))
    logging.basicConfig(level=logging.WARNING, format="shirushi: %(message)s")
    with serve_lock(settings.data_path):
        return _serve(settings, config_path, say)


def _serve(settings: Settings, config_path: str | None, say: Callable[[str], None]) -> int:
    embedded = None
    if not settings.redis.url:
        embedded = EmbeddedRedis(settings.redis_socket)
        embedded.start()
    backend = Backend(settings)
    try:
        try:
            import uvloop

            return uvloop.run(_main(settings, backend, config_path, say))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            return asyncio.run(_main(settings, backend, config_path, say))
    finally:
        backend.close()
        if embedded is not None:
            embedded.stop()
