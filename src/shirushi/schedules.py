"""The periodic jobs `serve` runs while it leads: outbox catch-up, presign refresh, CRLs (and
the CRL archive's retention), OCSP signer renewal, records retention, following outside CAs.
Each runs in a worker thread, one job at a time (single-flight), with jitter. Does I/O through
the Backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable

from shirushi.backend import Backend
from shirushi.ca.hierarchy import ISSUING, ROOT
from shirushi.ca.ocsp_signer import renew_ocsp_signer_if_due
from shirushi.errors import ShirushiError
from shirushi.lifecycle import Stopped, check_stop

log = logging.getLogger("shirushi.serve")

OUTBOX_EVERY = 2.0  # seconds; revocations normally finish their follow-up inline
OUTBOX_GRACE = 10.0
REFRESH_EVERY = 60.0
SIGNER_CHECK_EVERY = 3600.0
RETENTION_FIRST = 300.0  # seconds after the start: the retention job's first run


class Scheduler:
    """Periodic jobs, one at a time in a worker thread (single-flight), with jitter."""

    def __init__(self, backend: Backend, stop: threading.Event | None = None) -> None:
        self.backend = backend
        self.stop = stop or threading.Event()  # set by `serve` on SIGTERM/SIGINT
        # While leading, jobs stop on `term`: set on SIGTERM/SIGINT and when leadership ends.
        self.term = threading.Event()
        self.running: list[asyncio.Task[None]] = []
        self.settings = backend.settings
        self.lock = asyncio.Lock()
        self.crl_every = self.settings.crl.interval.total_seconds()
        from shirushi.outside.follow import Follower

        self.follower = Follower(backend)

    async def run_job(self, name: str, job: Callable[[], object]) -> None:
        async with self.lock:
            try:
                await asyncio.to_thread(job)
            except Stopped:
                pass  # what is not done is due again at the next start
            except ShirushiError as exc:
                log.warning("job failed", extra={"job": name, "error": str(exc)})
            except Exception:
                log.exception("job failed", extra={"job": name})

    async def every(
        self, name: str, seconds: float, job: Callable[[], object], *, jitter: float = 0.1, first: float | None = None
    ) -> None:
        """Run `job` every `seconds` (less up to `jitter` of it); the first time after `first`
        seconds when given (a daily job must not wait for a day after every restart)."""
        if first is not None:
            await asyncio.sleep(first)
            await self.run_job(name, job)
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
        for presigner in [self.backend.presigner, *self.backend.outside_presigners()]:
            presigner.ensure_complete(self.stop)
            presigner.refresh_due(self.stop)

    def follow_job(self) -> None:
        self.follower.poll()

    def refill_job(self) -> None:
        # At start, behind the open OCSP port: misses meanwhile are signed live.
        if self.backend.presigner.ensure_complete(self.stop) is None:
            log.info("startup", extra={"step": "presign", "responses": 0, "cache": "complete"})
        for presigner in self.backend.outside_presigners():
            check_stop(self.stop)
            presigner.ensure_complete(self.stop)

    def crl_job(self) -> None:
        # Run a little more often than the interval so a CRL is never late (policy 4.9.7).
        for name in (ISSUING, ROOT):
            for shard in self.backend.crls.stale(name):
                check_stop(self.stop)
                self.backend.crls.generate(name, scheduled=True, shard=shard)
        # Then the archive's retention (policy 5.5.2), after the CRLs that are due.
        for name in (ISSUING, ROOT):
            check_stop(self.stop)
            self.backend.crls.prune_archive(name)

    def signer_job(self) -> None:
        backend = self.backend  # the renewal logs "ocsp signer renewed" itself
        renew_ocsp_signer_if_due(backend.settings, backend.store, backend.keys, backend.clock)
        from shirushi.outside.registry import renewal_due

        # An outside CA's signer is renewed by that CA: say so, with the CSR ready.
        for warning in renewal_due(backend.settings, backend.store, backend.keys, backend.clock.now()):
            log.warning("outside signer renewal due", extra={"detail": warning})

    def lead(self) -> None:
        """Elected: the full presign when the cache is incomplete, then the periodic jobs."""
        self.stop = self.term = threading.Event()
        self.running = [asyncio.create_task(self.run_job("presign refill", self.refill_job)), *self.tasks()]

    def step_down(self) -> None:
        """No longer the leader (or stopping): the jobs stop, one in progress at its next batch."""
        self.term.set()
        for task in self.running:
            task.cancel()

    def retention_job(self) -> None:
        # Policy 5.5.2: records past retention go (archive/retention.py says what, and never
        # the audit log).
        from shirushi.archive.retention import prune

        backend = self.backend
        prune(backend.settings, backend.store, backend.clock.now(), forget=backend.writer.forget)

    def tasks(self) -> list[asyncio.Task[None]]:
        retention = self.settings.archive.retention_interval.total_seconds()
        tasks = [
            asyncio.create_task(self.every("outbox", OUTBOX_EVERY, self.outbox_job, jitter=0)),
            asyncio.create_task(self.every("presign refresh", REFRESH_EVERY, self.refresh_job)),
            asyncio.create_task(self.every("CRL", min(self.crl_every / 24, 3600), self.crl_job)),
            asyncio.create_task(self.every("signer renewal", SIGNER_CHECK_EVERY, self.signer_job)),
            asyncio.create_task(
                self.every("retention", retention, self.retention_job, first=min(retention, RETENTION_FIRST))
            ),
        ]
        if self.follower:
            poll = self.settings.outside.poll_interval.total_seconds()
            tasks.append(asyncio.create_task(self.every("follow", poll, self.follow_job, jitter=0)))
        return tasks
