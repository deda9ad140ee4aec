"""The presigner: signs OCSP responses for stored certificates and writes them to Redis.

Three entry points: `presign()` for a few serials (issuance, revocation: before the command
returns), `full_load()` for everything (at start, when the cache lacks its completion marker),
and `refresh_due()` for the periodic re-signing. Large batches are signed in worker processes,
one per core, each opening its own key handle (PKCS#11 handles never cross a fork) and its own
Redis connection: a worker writes what it signs, so the records never travel back through this
process (pickling them back and writing them from here cost a refill a fifth of its speed with
P-256, bench/RESULTS.md "Refill pipeline"). The two long jobs take a stop token and raise
`Stopped` between batches once it is set; a full load stopped that way leaves the completion
marker unset, so the next start signs everything again.
Does I/O: store reads, signer calls, Redis writes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.asn1.keys import IssuerId, issuer_id
from shirushi.asn1.ocsp import IssuerHashes, Status, build_response
from shirushi.cache import records
from shirushi.cache.writer import CacheWriter, Entry
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.lifecycle import check_stop, die_with_parent, leave_stop_to_parent
from shirushi.presign import planner
from shirushi.signing import Signer
from shirushi.store import Store
from shirushi.store.records import StatusRow

if TYPE_CHECKING:
    from shirushi.presign.live import Asked

log = logging.getLogger("shirushi.presign")

WORKER_NICE = 5


@dataclasses.dataclass(frozen=True)
class SigningContext:
    """Everything a worker needs to sign responses for one issuer (picklable)."""

    issuer_id: IssuerId
    hashes: tuple[IssuerHashes, ...]
    signer_cert_der: bytes
    validity: dt.timedelta
    interval: dt.timedelta

    @classmethod
    def create(cls, issuer: x509.Certificate, signer_cert: x509.Certificate, settings: Settings) -> SigningContext:
        return cls(
            issuer_id=issuer_id(issuer),
            hashes=tuple(IssuerHashes.of(issuer, alg) for alg in records.HASH_ALGORITHMS),
            signer_cert_der=signer_cert.public_bytes(serialization.Encoding.DER),
            validity=settings.presign.validity,
            interval=settings.presign.interval,
        )


def sign_rows(
    rows: Sequence[StatusRow], ctx: SigningContext, signer: Signer, now: dt.datetime
) -> tuple[list[Entry], dict[int, int]]:
    """Sign a response per row and CertID hash algorithm; return cache entries and due times."""
    signer_cert = x509.load_der_x509_certificate(ctx.signer_cert_der)
    entries: list[Entry] = []
    due: dict[int, int] = {}
    for row in rows:
        win = planner.window(
            now, validity=ctx.validity, interval=ctx.interval, signer_not_after=signer_cert.not_valid_after_utc
        )
        status = Status(row.revoked_at, row.reason)
        # A revoked status is final, but it is re-signed on the same schedule so that it never
        # lapses while the certificate is unexpired.
        for hashes in ctx.hashes:
            der = build_response(
                issuer=hashes,
                serial=row.serial,
                status=status,
                this_update=win.this_update,
                next_update=win.next_update,
                produced_at=now,
                signer_cert=signer_cert,
                signer=signer,
            )
            record = records.make_record(
                der,
                int(win.this_update.timestamp()),
                int(win.next_update.timestamp()),
                int(win.due.timestamp()),
                row.status_version,
            )
            ttl = int((win.next_update - now).total_seconds())
            entries.append(Entry(records.response_key(ctx.issuer_id, hashes.alg, row.serial), record.pack(), ttl))
        due[row.serial] = int(win.due.timestamp())
    return entries, due


# -- worker processes ------------------------------------------------------------------------

_worker_signer: Signer | None = None
_worker_writer: CacheWriter | None = None


def _worker_init(settings: Settings, parent: int, key_name: str) -> None:
    global _worker_signer, _worker_writer
    from shirushi.cache.connect import cache_writer, sync_client
    from shirushi.signing.backend import keystore

    # The pool forks its workers from the thread that submits the first batch, and that thread
    # waits in `_sign_batches` until the pool is shut down: tying the workers to it is tying
    # them to the process. SIGKILL: a worker holds nothing that needs a clean stop.
    die_with_parent(signal.SIGKILL, parent)
    leave_stop_to_parent()
    # Below the responders and the live-signing threads: a bulk refill uses whatever CPU they
    # leave, so a miss answered live during the refill does not queue behind it.
    os.nice(WORKER_NICE)

    _worker_signer = keystore(settings).open(key_name)
    # The same Redis, mode and replica wait as the parent's writer (`Backend.writer`).
    _worker_writer = cache_writer(settings.redis, sync_client(settings.redis, settings.redis_url))


def _worker_sign(rows: Sequence[StatusRow], ctx: SigningContext, now: dt.datetime, announce: bool) -> None:
    """Sign and store one batch. A Redis failure raises ServiceError, re-raised in the parent by
    `future.result()`."""
    assert _worker_signer is not None and _worker_writer is not None
    entries, due = sign_rows(rows, ctx, _worker_signer, now)
    _worker_writer.put(ctx.issuer_id, entries, due, announce=announce)


class Presigner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        writer: CacheWriter,
        signer: Signer,
        clock: Clock,
        *,
        key_name: str,
        context: Callable[[], SigningContext] | None = None,
    ) -> None:
        """`key_name`: the KeyStore name of `signer`'s key, which each worker process opens again
        (no default: a worker must never sign with another key than `signer`'s). `context`: an
        outside CA's signing context (`shirushi.outside`); by default the issuing CA's, from the
        hierarchy files."""
        self.settings = settings
        self.store = store
        self.writer = writer
        self.signer = signer
        self.clock = clock
        self.workers = settings.presign.workers or (os.cpu_count() or 1)
        self.batch = settings.presign.batch
        self._context: tuple[object, SigningContext] | None = None
        self._context_of = context
        self.key_name = key_name
        # Serials relying parties asked for and the live path could not sign at once (over its
        # budget): the full load signs them before the rest (set by `serve`, presign/live.py).
        self.asked: Asked | None = None

    def context(self) -> SigningContext:
        """The signing context of the current CA files, made again only when they change."""
        if self._context_of is not None:
            return self._context_of()
        from shirushi.ca.hierarchy import CertificatePaths, load_hierarchy

        stamp = CertificatePaths(self.settings.data_path).stamp()
        cached = self._context
        if stamp is None or cached is None or cached[0] != stamp:
            hierarchy = load_hierarchy(self.settings)
            cached = self._context = (
                stamp,
                SigningContext.create(hierarchy.issuing, hierarchy.ocsp_signer, self.settings),
            )
        return cached[1]

    def presign(self, rows: Sequence[StatusRow], *, announce: bool = False) -> None:
        """Sign and store responses for these rows now: in this process for a small job, over the
        worker processes for more than one batch (a bulk revocation)."""
        ctx = self.context()
        if len(rows) > self.batch and self.workers > 1:
            chunks = (list(rows[i : i + self.batch]) for i in range(0, len(rows), self.batch))
            self._sign_batches(ctx, chunks, None, announce=announce)
            return
        entries, due = sign_rows(rows, ctx, self.signer, self.clock.now())
        self.writer.put(ctx.issuer_id, entries, due, announce=announce)

    def _sign_batches(
        self,
        ctx: SigningContext,
        batches: Iterator[list[StatusRow]],
        stop: threading.Event | None,
        *,
        announce: bool = False,
    ) -> int:
        """Sign and store batches over the worker processes.

        Raises Stopped between batches once `stop` is set: batches not yet started are dropped,
        and only those already being signed are waited for (at most two per worker).
        """
        count = 0
        now = self.clock.now()
        if self.workers <= 1:
            for rows in batches:
                check_stop(stop)
                entries, due = sign_rows(rows, ctx, self.signer, now)
                self.writer.put(ctx.issuer_id, entries, due, announce=announce)
                count += len(rows)
            return count
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, initializer=_worker_init, initargs=(self.settings, os.getpid(), self.key_name)
        ) as pool:
            pending: set[concurrent.futures.Future[None]] = set()
            try:
                for rows in batches:
                    check_stop(stop)
                    pending.add(pool.submit(_worker_sign, rows, ctx, now, announce))
                    count += len(rows)
                    # Bounded look-ahead keeps memory flat however many certificates there are.
                    if len(pending) >= self.workers * 2:
                        done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                        for future in done:
                            future.result()
                while pending:
                    check_stop(stop)
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        future.result()
            except BaseException:
                # Drop the batches not started and wait for those being signed (at most two per
                # worker). Not wait=False: that also forgets the pool's manager thread, so the
                # `with` no longer joins it and this thread returns with workers still busy.
                # They die with this thread (lifecycle.die_with_parent: the kernel signals on
                # the end of the thread that forked them), possibly in the middle of writing a
                # result, and the manager thread then waits for the rest forever: a `serve` that
                # logged "stopped" and never exited.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return count

    def full_load(self, stop: threading.Event | None = None) -> int:
        """Sign every unexpired certificate, then mark the issuer's cache complete."""
        ctx = self.context()
        now = self.clock.now()
        started = time.monotonic()
        rows = self.store.statuses(ctx.issuer_id, valid_at=now, batch=self.batch)
        if self.asked is not None:
            rows = self._asked_first(ctx, rows, self.asked, now)
        count = self._sign_batches(ctx, rows, stop)
        self.writer.mark_complete(ctx.issuer_id, int(now.timestamp()))
        log.info("presign run", extra={"run": "full", "responses": count, "seconds": _since(started)})
        return count

    def _asked_first(
        self, ctx: SigningContext, rows: Iterator[list[StatusRow]], asked: Asked, now: dt.datetime
    ) -> Iterator[list[StatusRow]]:
        """The store's batches, each preceded by what was asked for since the previous one.

        Batches are pulled only when a worker has room (`_sign_batches`' look-ahead), so a serial
        asked for waits at most for the batches already in work. Serials signed that way are
        skipped when the scan reaches them.
        """
        signed: set[int] = set()
        for batch in rows:
            while serials := asked.take(self.batch):
                first = [r for r in self.store.statuses_of(ctx.issuer_id, serials) if r.not_after > now]
                signed.update(r.serial for r in first)
                if first:
                    yield first
            rest = [r for r in batch if r.serial not in signed] if signed else batch
            if rest:
                yield rest

    def ensure_complete(self, stop: threading.Event | None = None) -> int | None:
        """Full load unless the cache says it already holds everything; returns the count signed."""
        ctx = self.context()
        if self.writer.is_complete(ctx.issuer_id):
            return None
        return self.full_load(stop)

    def refresh_due(self, stop: threading.Event | None = None) -> int:
        """Re-sign every response whose due time has come (policy 4.9.9, BR 4.9.10)."""
        ctx = self.context()
        now = self.clock.now()
        started = time.monotonic()
        total = 0
        while True:
            check_stop(stop)
            serials = self.writer.due(ctx.issuer_id, int(now.timestamp()), self.batch * max(1, self.workers))
            if not serials:
                # Checked every minute under `serve`: only runs that signed something are news.
                level = logging.INFO if total else logging.DEBUG
                log.log(level, "presign run", extra={"run": "due", "responses": total, "seconds": _since(started)})
                return total
            rows = self.store.statuses_of(ctx.issuer_id, serials)
            live = [r for r in rows if r.not_after > now]
            gone = set(serials) - {r.serial for r in live}
            self.writer.forget(ctx.issuer_id, gone)
            if live:
                chunks = (live[i : i + self.batch] for i in range(0, len(live), self.batch))
                total += self._sign_batches(ctx, chunks, stop)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
