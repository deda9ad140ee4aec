"""Where a responder's issuers come from, and picking up changes without a restart.

The issuers are the PEM bundle (`ocsp.issuers`, Shirushi's own issuing CA) plus the outside CAs
listed in the Redis hash `shirushi:ocsp:issuers` (written by `issuer add` and by `serve`), so a
responder anywhere learns of a new CA from Redis. `IssuerSource.changed()` rereads both and
returns a new map only when something changed; workers call it every `RELOAD_EVERY` seconds in a
thread (file and Redis I/O stay off the event loop) and at once on SIGHUP. A failed read keeps
the current map: a Redis outage never makes a responder forget an issuer.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import redis
from cryptography import x509

from shirushi.cache import cluster
from shirushi.cache.connect import sync_client
from shirushi.cache.records import ISSUERS_KEY
from shirushi.config import Settings
from shirushi.errors import ServiceError, ShirushiError
from shirushi.responder.issuers import IssuerMap, issuers_path, load_issuers, read_bundle

log = logging.getLogger("shirushi.responder")

RELOAD_EVERY = 5.0  # seconds; issue: a new issuer is answered for within a bounded time
MAX_CERT_BYTES = 64 * 1024


class IssuerSource:
    def __init__(self, settings: Settings) -> None:
        self.path: Path = issuers_path(settings)
        self.settings = settings
        self._client: redis.Redis | None = None
        self.stamp: bytes | None = None

    @property
    def client(self) -> redis.Redis:
        # Made on first use: a cluster client talks to the cluster as it is made, which must
        # not stop a responder from starting while Redis is down (ServiceError is retried).
        if self._client is None:
            self._client = sync_client(self.settings.redis, self.settings.redis_url, for_reads=True)
        return self._client

    def outside(self) -> list[bytes]:
        """PEM certificates of the outside CAs in Redis (sorted, so the stamp is stable)."""
        values = self.client.hgetall(ISSUERS_KEY)
        return sorted(v for v in values.values() if isinstance(v, bytes) and len(v) <= MAX_CERT_BYTES)  # type: ignore[union-attr]

    def load(self) -> IssuerMap:
        """Both sources now; the bundle is required, Redis is best effort (logged)."""
        own = load_issuers(self.path)  # its errors name the file
        try:
            extra = self.outside()
        except (*cluster.ERRORS, ServiceError) as exc:
            log.warning("cannot read outside issuers from Redis (retried every %.0f s): %s", RELOAD_EVERY, exc)
            return own
        bundle = self.path.read_bytes()
        self.stamp = self._stamp(bundle, extra)
        return self._build(bundle, extra)

    def changed(self) -> IssuerMap | None:
        """A new map when the bundle or the Redis list changed; None otherwise or on failure."""
        try:
            bundle = self.path.read_bytes()
            extra = self.outside()
            stamp = self._stamp(bundle, extra)
            if stamp == self.stamp:
                return None
            issuers = self._build(bundle, extra)
        except (OSError, *cluster.ERRORS, ShirushiError, ValueError) as exc:
            log.warning("issuer reload failed, keeping the current issuers: %s", exc)
            return None
        if self.stamp is not None:
            log.info("issuers reloaded", extra={"issuers": len(issuers)})
        self.stamp = stamp
        return issuers

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @staticmethod
    def _stamp(bundle: bytes, extra: list[bytes]) -> bytes:
        digest = hashlib.sha256(bundle)
        for pem in extra:
            digest.update(b"\0" + pem)
        return digest.digest()

    def _build(self, bundle: bytes, extra: list[bytes]) -> IssuerMap:
        certificates = read_bundle(bundle, self.path)
        for pem in extra:
            try:
                certificates.append(x509.load_pem_x509_certificate(pem))
            except ValueError:
                log.warning("an outside issuer in Redis is not a PEM certificate; skipped")
        return IssuerMap(certificates)
