"""Retention of records (policy 5.5.2: kept at least `archive.retention_years` after the
certificate expires), run by `serve`'s retention schedule. Archived CRLs have their own retention,
`crl.archive_retention_years`, applied by the CRL schedule (`crl/archive.py`). The cut-off is pure
(`cutoff`, time as an argument); `prune` does store I/O.

What is pruned, and only that: certificates (not CA certificates) whose notAfter is more than the
retention before `now`, with their revocation (same row) and their finished outbox work, unless a
CRL still owes them an entry after expiry (RFC 5280 3.3). OCSP responses need no pruning: Redis
expires each one with its nextUpdate, and expired certificates are no longer refreshed. Never
pruned: the audit log (its rows are append-only and the records export chains them all; each
prune appends an audit record naming what it removed), blocked keys (BR 6.1.1.3: a compromised
key stays refused), problem reports, and the CA certificates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable

from shirushi.clock import years_before
from shirushi.config import Settings
from shirushi.store import Store
from shirushi.store import archive as records
from shirushi.store.records import serial_value

log = logging.getLogger("shirushi.archive")

# Certificates deleted per transaction.
BATCH = 1000


@dataclasses.dataclass(frozen=True)
class Pruned:
    certificates: int = 0


def prune(
    settings: Settings,
    store: Store,
    now: dt.datetime,
    *,
    forget: Callable[[str, list[int]], None] | None = None,
) -> Pruned:
    """Delete what is past retention at `now` (see the module docstring); `forget` drops pruned
    serials from the cache's refresh schedule. `archive.retention_years = 0` keeps certificates
    forever."""
    certificates = 0
    years = settings.archive.retention_years
    if years > 0:
        before = years_before(now, years)
        by_issuer: dict[str, list[str]] = defaultdict(list)
        for issuer_id, serial, _name in records.expired_before(store.engine, before):
            by_issuer[issuer_id].append(serial)
        for issuer_id, serials in by_issuer.items():
            for n in range(0, len(serials), BATCH):
                chunk = serials[n : n + BATCH]
                detail = {
                    "expired_before": f"{before:%Y-%m-%dT%H:%M:%SZ}",
                    "retention_years": years,
                    "serials": chunk if len(chunk) <= 100 else len(chunk),
                    "serials_sha256": hashlib.sha256(" ".join(chunk).encode()).hexdigest(),
                }
                certificates += records.delete_certificates(store.engine, issuer_id, chunk, at=now, detail=detail)
                if forget is not None:
                    forget(issuer_id, [serial_value(s) for s in chunk])
    pruned = Pruned(certificates)
    log.info("retention", extra=dataclasses.asdict(pruned))
    return pruned
