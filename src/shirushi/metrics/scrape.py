"""What a scrape reads now rather than counts: the exposition, and the backend's gauges.

The backend's gauges come from the system of record at scrape time, so they are right even
when the process that did the work was another one (a CLI `revoke`, a presign worker):
- CRL age, time to nextUpdate, entries and size, per issuer and shard (`crl.shards`; 0 is the
  full CRL), from the store and the published file;
- presign lag (how long the most overdue response has waited) and the validity left of the
  response due soonest (its nextUpdate against now), per issuer (outside CAs too), from Redis;
- the time left on each OCSP signer certificate (Shirushi's own, and each outside CA's delegated
  signer, which only that CA can renew: `serve` warns and writes a CSR, `outside/registry.py`).
A part that cannot be read is left out of that scrape (and logged at debug), never a 500.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from shirushi.backend import Backend

log = logging.getLogger("shirushi.metrics")


def exposition(path: Path | None, collectors: Sequence[Any] = ()) -> Callable[[], tuple[bytes, str]]:
    """The /metrics body: every process's values in `path` (multiprocess mode) plus `collectors`."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    def render() -> tuple[bytes, str]:
        registry = CollectorRegistry(auto_describe=False)
        if path is not None:
            multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render


class BackendCollector:
    """Gauges read from the store, the CRL files and Redis at scrape time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are known only at collect time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        now = self.backend.clock.now()
        shard = ["issuer", "shard"]
        age = GaugeMetricFamily("shirushi_crl_age_seconds", "Seconds since thisUpdate of the newest CRL", labels=shard)
        left = GaugeMetricFamily(
            "shirushi_crl_next_update_seconds", "Seconds until nextUpdate of the newest CRL", labels=shard
        )
        size = GaugeMetricFamily("shirushi_crl_size_bytes", "Size of the published CRL file", labels=shard)
        entries = GaugeMetricFamily("shirushi_crl_entries", "Entries in the newest CRL", labels=shard)
        try:
            self._crls(now, age, left, size, entries)
        except Exception as exc:
            log.debug("metrics: CRL gauges skipped: %s", exc)
        yield from (age, left, size, entries)

        signer = GaugeMetricFamily(
            "shirushi_ocsp_signer_expiry_seconds",
            "Seconds until notAfter of the OCSP signer certificate, by issuer (outside CAs: their delegated signer)",
            labels=["issuer", "outside"],
        )
        try:
            self._signers(now, signer)
        except Exception as exc:
            log.debug("metrics: signer gauges skipped: %s", exc)
        yield signer

        lag = GaugeMetricFamily(
            "shirushi_presign_lag_seconds",
            "How long the most overdue OCSP response has waited for re-signing (0: none is due)",
            labels=["issuer"],
        )
        validity = GaugeMetricFamily(
            "shirushi_ocsp_oldest_response_validity_seconds",
            "Seconds until nextUpdate of the OCSP response due soonest for re-signing",
            labels=["issuer"],
        )
        try:
            self._presign(int(now.timestamp()), lag, validity)
        except Exception as exc:
            log.debug("metrics: presign gauges skipped: %s", exc)
        yield from (lag, validity)

    def _crls(self, now: Any, age: Any, left: Any, size: Any, entries: Any) -> None:
        from shirushi.ca.hierarchy import ISSUING, ROOT
        from shirushi.crl.service import crl_path

        store = self.backend.store
        for name in (ISSUING, ROOT):
            row = store.issuer(name)
            if row is None:
                continue
            for shard in self.backend.crls.shards(name):
                last = store.crls.last_published(row.id, shard)
                if last is None:
                    continue
                labels = [name, str(shard)]
                age.add_metric(labels, (now - last.this_update).total_seconds())
                if last.next_update is not None:
                    left.add_metric(labels, (last.next_update - now).total_seconds())
                if last.entries is not None:
                    entries.add_metric(labels, last.entries)
                with contextlib.suppress(OSError):  # not published yet on this machine
                    size.add_metric(labels, os.stat(crl_path(self.backend.settings, name, shard)).st_size)

    def _signers(self, now: Any, gauge: Any) -> None:
        from cryptography import x509

        from shirushi.ca.hierarchy import ISSUING
        from shirushi.outside import registry
        from shirushi.store.outside import outside_issuers

        own = x509.load_der_x509_certificate(self.backend.presigner.context().signer_cert_der)
        gauge.add_metric([ISSUING, "false"], (own.not_valid_after_utc - now).total_seconds())
        for row in outside_issuers(self.backend.store):
            ca = registry.load(self.backend.settings, row)
            if ca.signer is not None:
                gauge.add_metric([row.name, "true"], (ca.signer.not_valid_after_utc - now).total_seconds())

    def _presign(self, now: int, lag: Any, validity: Any) -> None:
        from shirushi.cache import records
        from shirushi.cache.writer import due_key
        from shirushi.store.outside import outside_issuers

        # An outside CA's issuer id is its row id (`issuer add`); no presigner is made here.
        issuers = [self.backend.presigner.context().issuer_id, *(r.id for r in outside_issuers(self.backend.store))]
        for issuer in issuers:
            first = cast(list[tuple[bytes, float]], self.backend.redis.zrange(due_key(issuer), 0, 0, withscores=True))
            if not first:
                continue
            member, due = first[0]
            lag.add_metric([issuer], max(0, now - int(due)))
            serial = int(member, 16)
            record = self.backend.writer.get(records.response_key(issuer, "sha1", serial))
            if record is not None:
                validity.add_metric([issuer], record.next_update - now)
