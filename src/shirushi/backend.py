"""Wires the backend (the process that holds keys) from settings: store, keys, CA, presigner.

Objects are built on first use so that a command touches only what it needs (`ca-certs` opens no
database, `issue` opens no worker pool). Does I/O through the objects it builds.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from typing import TYPE_CHECKING

from shirushi.ca.authority import OCSP_SIGNER, Authority
from shirushi.clock import Clock, SystemClock
from shirushi.config import Settings
from shirushi.errors import ServiceError, ShirushiError
from shirushi.signing import KeyStore
from shirushi.store import CertificateRecord, Store

# Imported where first used, so a command loads only what it needs (CLI start-up time):
# `issue` never builds a CRL, `ca-certs` never talks to Redis.
if TYPE_CHECKING:
    import redis

    from shirushi.ca.lint_pool import LintPool
    from shirushi.cache.writer import CacheWriter
    from shirushi.crl.service import CRLService
    from shirushi.presign.presigner import Presigner
    from shirushi.revocation import Revoker

log = logging.getLogger("shirushi.backend")


class Backend:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._initialising = False
        self._lint_pool: LintPool | None = None
        # Outbox rows whose work is done but not yet marked so. Concurrent issuances mark theirs
        # in one statement (whoever finds no flush running does it for all queued); ids queued
        # during a flush go with the next one, a drain, or close (redoing them is harmless).
        self._done_later: list[int] = []
        self._done_lock = threading.Lock()
        self._flushing = threading.Lock()

    def use_lint_pool(self) -> None:
        """Lint issuance in worker processes, one per core (for the long-running `serve`)."""
        from shirushi.ca.lint_pool import LintPool

        if self._lint_pool is None:
            self._lint_pool = LintPool()
            self.authority.linter = self._lint_pool.lint_der

    def init(self) -> list[str]:
        """`shirushi init`: the one use case allowed to create the database."""
        self._initialising = True
        return self.authority.init()

    @functools.cached_property
    def store(self) -> Store:
        # Anything but init on an empty data directory is a mistake (a wrong directory or
        # config): say so instead of creating an empty database that "knows no certificate".
        return Store.open(self.settings.database_url, create=self._initialising)

    @functools.cached_property
    def keys(self) -> KeyStore:
        from shirushi.signing.backend import keystore

        return keystore(self.settings)

    @functools.cached_property
    def redis(self) -> redis.Redis:
        from shirushi.cache.writer import connect

        return connect(self.settings.redis_url, self.settings.redis.timeout)

    @functools.cached_property
    def writer(self) -> CacheWriter:
        from shirushi.cache.writer import CacheWriter

        return CacheWriter(self.redis)

    @functools.cached_property
    def presigner(self) -> Presigner:
        from shirushi.presign.presigner import Presigner

        return Presigner(self.settings, self.store, self.writer, self.keys.open(OCSP_SIGNER), self.clock)

    @functools.cached_property
    def authority(self) -> Authority:
        authority = Authority(self.settings, self.store, self.keys, self.clock)
        authority.on_issued.append(self._presign_issued)
        return authority

    @functools.cached_property
    def crls(self) -> CRLService:
        from shirushi.crl.service import CRLService

        return CRLService(self.settings, self.store, self.keys, self.clock)

    @functools.cached_property
    def revoker(self) -> Revoker:
        from shirushi.revocation import Revoker

        return Revoker(self.store, self.clock, lambda record: self.drain_outbox())

    def _presign_issued(self, record: CertificateRecord) -> None:
        """BR 4.9.10: an authoritative response within 15 minutes of issuance; we do it at once.

        Only this certificate's outbox work is read (not the whole outbox); marking it done is
        grouped with concurrent issuances (one commit for many).
        """
        work = self.store.pending_work("ocsp", record.issuer_id, record.serial_hex)
        if not work:
            return  # another drain did it already
        try:
            # Read after the work ids: a revocation committed since is in the status read here.
            rows = self.store.statuses_of(record.issuer_id, [record.serial])
            if rows and record.issuer_id == self.presigner.context().issuer_id:
                self.presigner.presign(rows, announce=True)
        except ShirushiError as exc:
            raise ServiceError(f"OCSP response not yet in Redis ({exc}); `serve` finishes it when it runs") from None
        with self._done_lock:
            self._done_later.extend(work)
        if self._flushing.acquire(blocking=False):
            try:
                self._flush_done()
            except Exception as exc:  # the response is in Redis; at worst it is signed again
                log.warning("could not mark finished outbox work done: %s", exc)
            finally:
                self._flushing.release()

    def _flush_done(self) -> None:
        with self._done_lock:
            done, self._done_later = self._done_later, []
        if done:
            self.store.outbox_done(done, self.clock.now())

    def drain_outbox(self, *, serial: str | None = None, min_age: float = 0.0) -> list[str]:
        """Do the follow-up work committed with issuances and revocations; say what failed.

        OCSP work is grouped per issuer into one signing batch (announced to responders so any
        in-process copy is dropped), CRL work into one new CRL per issuer. Work that fails stays
        in the outbox for the next drain (every few seconds under `serve`, at start at the latest).
        """
        self._flush_done()
        work = self.store.pending_outbox(older_than=self.clock.now() - dt.timedelta(seconds=min_age))
        if serial is not None:
            work = [w for w in work if w[1] == "ocsp" and w[3] == serial]
        pending: list[str] = []
        done: list[int] = []
        ocsp: dict[str, list[tuple[int, str]]] = {}
        crl: dict[str, list[int]] = {}
        for work_id, kind, issuer, item in work:
            if kind == "ocsp" and item is not None:
                ocsp.setdefault(issuer, []).append((work_id, item))
            elif kind == "crl":
                crl.setdefault(issuer, []).append(work_id)
        for issuer, items in ocsp.items():
            if issuer != self.presigner.context().issuer_id:
                # Only the issuing CA runs an OCSP service; the root's certificates are covered
                # by its CRL (the ARL).
                done += [work_id for work_id, _ in items]
                continue
            rows = self.store.statuses_of(issuer, [int(s, 16) for _, s in items])
            try:
                if rows:
                    self.presigner.presign(rows, announce=True)
                done += [work_id for work_id, _ in items]
            except ShirushiError as exc:
                pending.append(f"OCSP response not yet in Redis ({exc})")
        for issuer, ids in crl.items():
            try:
                self.crls.generate(self.crls.issuer_name(issuer), scheduled=False)
                done += ids
            except ShirushiError as exc:
                pending.append(f"CRL not yet published ({exc})")
        self.store.outbox_done(done, self.clock.now())
        return pending

    def close(self) -> None:
        if self._lint_pool is not None:
            self._lint_pool.close()
        if "store" in self.__dict__:
            try:
                self._flush_done()
            except Exception as exc:  # the next drain does that work again: nothing is lost
                log.warning("could not mark finished outbox work done: %s", exc)
        if "redis" in self.__dict__:
            self.redis.close()
        if "store" in self.__dict__:
            self.store.close()
