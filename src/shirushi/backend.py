"""Wires the backend (the process that holds keys) from settings: store, keys, CA, presigner.

Objects are built on first use so that a command touches only what it needs (`ca-certs` opens no
database, `issue` opens no worker pool, builds no CRL). Does I/O through the objects it builds.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from shirushi.ca.authority import Authority
from shirushi.ca.bootstrap import init_hierarchy
from shirushi.ca.hierarchy import ocsp_signer_key
from shirushi.clock import Clock, SystemClock
from shirushi.config import Settings
from shirushi.errors import ServiceError
from shirushi.signing import KeyStore
from shirushi.store import CertificateRecord, Store

# Imported where first used, so a command loads only what it needs (CLI start-up time):
# `issue` never builds a CRL, `ca-certs` never talks to Redis.
if TYPE_CHECKING:
    import redis

    from shirushi.bulkrevoke import BulkRevoker
    from shirushi.ca.lint_pool import LintPool
    from shirushi.cache.writer import CacheWriter
    from shirushi.crl.service import CRLService
    from shirushi.followup import FollowUp
    from shirushi.presign.presigner import Presigner
    from shirushi.revocation import Revoker


class Backend:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._initialising = False
        self._lint_pool: LintPool | None = None
        self._outside: dict[str, tuple[int, Presigner]] = {}

    def use_lint_pool(self, pool: LintPool | None = None) -> None:
        """Lint issuance in worker processes: `pool`, or one per core (for the long-running
        `serve`). The backend closes the pool."""
        from shirushi.ca.lint_pool import LintPool

        if self._lint_pool is None:
            self._lint_pool = LintPool() if pool is None else pool
            self.authority.linter = self._lint_pool.lint_der

    def init(self) -> list[str]:
        """`shirushi init`: the one use case allowed to create the database."""
        self._initialising = True
        return init_hierarchy(self.settings, self.store, self.keys, self.clock)

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
        from shirushi.cache.connect import sync_client

        return sync_client(self.settings.redis, self.settings.redis_url)

    @functools.cached_property
    def writer(self) -> CacheWriter:
        from shirushi.cache.connect import cache_writer

        return cache_writer(self.settings.redis, self.redis)

    @functools.cached_property
    def presigner(self) -> Presigner:
        from shirushi.presign.presigner import Presigner

        key = ocsp_signer_key(self.settings)
        return Presigner(self.settings, self.store, self.writer, self.keys.open(key), self.clock, key_name=key)

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
    def followup(self) -> FollowUp:
        from shirushi.followup import FollowUp

        # The presigner and the CRL service are built on first use: issuance needs no CRL.
        return FollowUp(self.store, self.clock, lambda: self.presigner, lambda: self.crls, self.outside_presigner)

    @functools.cached_property
    def revoker(self) -> Revoker:
        from shirushi.revocation import Revoker

        return Revoker(self.store, self.clock, self.followup)

    @functools.cached_property
    def bulk_revoker(self) -> BulkRevoker:
        from shirushi.bulkrevoke import BulkRevoker

        return BulkRevoker(self.store, self.clock, self.followup)

    def outside_presigner(self, issuer: str) -> Presigner | None:
        """The presigner of outside CA `issuer` with its delegated signer (`shirushi.outside`);
        None for another issuer or before its signer certificate is installed. Made again when
        that certificate changes."""
        from shirushi.outside import registry
        from shirushi.presign.presigner import Presigner
        from shirushi.store.outside import outside_issuers

        row = next((r for r in outside_issuers(self.store) if r.id == issuer), None)
        if row is None:
            return None
        ca = registry.load(self.settings, row)
        if ca.signer is None:
            return None
        cached = self._outside.get(issuer)
        if cached is not None and cached[0] == ca.signer.serial_number:
            return cached[1]
        context = registry.signing_context(self.settings, ca)
        key = registry.signer_key_name(row.name)
        presigner = Presigner(
            self.settings,
            self.store,
            self.writer,
            self.keys.open(key),
            self.clock,
            context=lambda: context,
            key_name=key,
        )
        self._outside[issuer] = (ca.signer.serial_number, presigner)
        return presigner

    def outside_presigners(self) -> list[Presigner]:
        """The presigners of every outside CA with an installed signer certificate."""
        from shirushi.store.outside import outside_issuers

        found = (self.outside_presigner(row.id) for row in outside_issuers(self.store))
        return [p for p in found if p is not None]

    def _presign_issued(self, record: CertificateRecord) -> None:
        """BR 4.9.10: an authoritative response within 15 minutes of issuance; we do it at once."""
        pending = self.followup.issued(record)
        if pending:
            raise ServiceError(f"{'; '.join(pending.messages())}; `serve` finishes it when it runs")

    def drain_outbox(self, *, min_age: float = 0.0) -> list[str]:
        """Do all follow-up work still pending (`FollowUp.drain`); say what failed."""
        return self.followup.drain(min_age=min_age).messages()

    def close(self) -> None:
        if self._lint_pool is not None:
            self._lint_pool.close()
        if "followup" in self.__dict__:
            self.followup.close()
        if "redis" in self.__dict__:
            self.redis.close()
        if "store" in self.__dict__:
            self.store.close()
