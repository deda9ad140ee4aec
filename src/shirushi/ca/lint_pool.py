"""Pre-issuance linting in worker processes, one per core, so issuance uses every core.

pkilint is pure Python: one lint holds a core for about 10 ms, and threads cannot share that.
The pool is made once per long-running backend process (`serve`); each worker builds pkilint's
validators once when it starts. Workers are fresh interpreters (spawned, not forked), so they
inherit no key material, open files or threads from the process that holds the CA keys: they get
certificate DER (signed with a throwaway key) and return findings. On a single core, or when
the pool cannot be used, the lint runs in the calling process with the same code and result.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from shirushi.ca import lint

log = logging.getLogger("shirushi.lint")

# What the CA lints after start-up: every issuance is a subscriber certificate.
WARM_TYPES = ("OV-FINAL-CERTIFICATE", "DV-FINAL-CERTIFICATE")
PARENT_CHECK_EVERY = 1.0  # seconds


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _ready() -> int:
    return os.getpid()


def _worker_start(warm_types: tuple[str, ...], parent: int) -> None:
    """In each worker: leave Ctrl-C to the parent, end with the parent, build the linters."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on SIGINT/SIGTERM
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    lint.warm(warm_types)


def _exit_with(parent: int) -> None:
    # A parent killed with SIGKILL cannot stop its pool, and a worker waiting for work never
    # sees it go (it holds both ends of the task queue): check, so no worker is left behind.
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_EVERY)
    os._exit(0)


class LintPool:
    """`lint_der` with the same meaning as `lint.lint_der`, run over worker processes."""

    def __init__(
        self,
        processes: int | None = None,
        warm_types: tuple[str, ...] = WARM_TYPES,
        *,
        background: bool = False,
        wait: bool = True,
    ) -> None:
        """`wait=False` starts the workers without waiting for them to warm: `serve` opens the
        OCSP port meanwhile, and an issuance that comes first waits for a warm worker."""
        self.processes = available_cores() if processes is None else processes
        self._warm_types = warm_types
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._background = background
        if background and available_cores() > 1:
            self.processes = 1
            self._executor = self._start(wait=False)
        elif self.processes > 1 and not background:
            self._executor = self._start(wait=wait)
        elif not background:
            # One core: a worker would only add a copy and a hop; lint here, warmed the same.
            lint.warm(warm_types)

    @classmethod
    def in_background(cls) -> LintPool:
        """One worker, started and not waited for: a one-shot command (`shirushi issue`) then
        imports pkilint and builds its validator (most of the command's CPU time) on another
        core while it reads the CSR, opens the database and builds the certificate. With one
        core the lint runs in the calling process, as without a pool."""
        return cls(background=True)

    def _start(self, *, wait: bool = True) -> concurrent.futures.ProcessPoolExecutor:
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self._warm_types, os.getpid()),
        )
        # Start (and warm) every worker now rather than on the first issuances: each pending
        # task without an idle worker spawns one, and a worker is idle only once warmed.
        started = [executor.submit(_ready) for _ in range(self.processes)]
        if wait:
            for future in started:
                future.result()
        return executor

    @property
    def pids(self) -> set[int]:
        """The worker processes' ids (for tests and diagnostics)."""
        executor = self._executor
        return set() if executor is None else {p.pid for p in executor._processes.values() if p.pid is not None}

    def lint_der(self, der: bytes, cert_type: str) -> list[lint.Finding]:
        """Every finding pkilint reports for `der`; blocks the calling thread only."""
        executor = self._executor
        if executor is None:
            return lint.lint_der(der, cert_type)
        try:
            return executor.submit(lint.lint_der, der, cert_type).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): lint this one here, replace the pool for
            # the next ones. The verdict is the same either way.
            log.warning("a lint worker died; restarting the lint pool")
            self._restart(executor)
            return lint.lint_der(der, cert_type)

    def _restart(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another thread replaced it already
            broken.shutdown(wait=False, cancel_futures=True)
            try:
                self._executor = self._start()
            except (OSError, BrokenProcessPool) as exc:
                log.warning("lint pool unavailable (%s); linting in process", exc)
                self._executor = None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            if self._background:
                # A one-shot command is done (or failed before its lint): its worker may still be
                # loading pkilint, and nothing it holds is needed. Our own child, by its handle.
                for process in list(executor._processes.values()):
                    process.terminate()
            executor.shutdown(wait=True, cancel_futures=True)
