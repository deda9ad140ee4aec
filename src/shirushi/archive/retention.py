"""Retention of records (policy 5.5.2: kept at least `archive.retention_years` after the
certificate expires; CRLs `crl.archive_retention_years` after their thisUpdate), run by `serve`'s
retention schedule. The cut-off is pure (`cutoff`, time as an argument); `prune` does store and
file I/O.

What is pruned, and only that: certificates (not CA certificates) whose notAfter is more than the
retention before `now`, with their revocation (same row) and their finished outbox work, unless a
CRL still owes them an entry after expiry (RFC 5280 3.3); archived CRL files and records whose
thisUpdate is older than the CRL retention, except each scope's newest CRL record (numbering goes
on from it, RFC 5280 5.2.3). OCSP responses need no pruning: Redis expires each one with its
nextUpdate, and expired certificates are no longer refreshed. Never pruned: the audit log (its
rows are append-only and the records export chains them all; each prune appends an audit record
naming what it removed), blocked keys (BR 6.1.1.3: a compromised key stays refused), problem
reports, and the CA certificates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable

from shirushi.config import Settings
from shirushi.crl.shards import crl_name
from shirushi.store import Store
from shirushi.store import archive as records
from shirushi.store.records import serial_value

log = logging.getLogger("shirushi.archive")

# Certificates deleted per transaction.
BATCH = 1000


def cutoff(now: dt.datetime, years: int) -> dt.datetime:
    """`now` less `years` calendar years (29 February falls back to the 28th)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


@dataclasses.dataclass(frozen=True)
class Pruned:
    certificates: int = 0
    crls: int = 0
    crl_files: int = 0


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
    certificates = crls = crl_files = 0
    years = settings.archive.retention_years
    if years > 0:
        before = cutoff(now, years)
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
    crl_years = settings.crl.archive_retention_years
    before = cutoff(now, crl_years)
    scopes: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for issuer_id, name, shard, number in records.old_crls(store.engine, before):
        scopes[(issuer_id, name, shard)].append(number)
    for (issuer_id, name, shard), numbers in scopes.items():
        # The files go first: a crash in between leaves records without files (pruned next
        # time), never files no record leads to.
        directory = settings.layout.crl_archive(crl_name(name, shard))
        for number in numbers:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{number}.crl").unlink()
                crl_files += 1
        detail = {
            "this_update_before": f"{before:%Y-%m-%dT%H:%M:%SZ}",
            "retention_years": crl_years,
            "numbers": [numbers[0], numbers[-1]],
        }
        records.delete_crls(store.engine, issuer_id, shard, numbers, at=now, detail=detail)
        crls += len(numbers)
    pruned = Pruned(certificates, crls, crl_files)
    log.info("retention", extra=dataclasses.asdict(pruned))
    return pruned
