"""CRL generation as a use case: select entries, number, sign, publish, archive, record.

Per issuer: the issuing CA's CRLs (subscriber certificates) and the root's ARL (CA certificates).
The issuing CA's CRLs are its full CRL (shard 0) and, with `crl.shards` > 1, one CRL per shard
(`shards.py`); each is its own scope with its own numbers, entry memo, lock and group commit,
and carries a critical issuingDistributionPoint naming its URL. Published into the repository
directory at the names the certificates' CRL Distribution Points use; archived before that,
compressed and content-addressed, and pruned after `crl.archive_retention_years` (policy 5.5,
`archive.py`). Does I/O: store, key backend, files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from shirushi.ca.hierarchy import ISSUING, ROOT, CertificatePaths
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.crl.archive import CrlArchive, Pruned
from shirushi.crl.build import sign_crl
from shirushi.crl.entries import EntrySet
from shirushi.crl.group import GroupCommit
from shirushi.crl.publish import publish
from shirushi.crl.shards import crl_name, crl_url, published_shards
from shirushi.errors import StateError
from shirushi.metrics.registry import metrics
from shirushi.signing import KeyStore, Signer
from shirushi.store import Store
from shirushi.store.crl_archive import ArchiveIndex
from shirushi.store.locks import is_postgresql, scope_lock
from shirushi.store.records import OutboxRow
from shirushi.store.revoked import RevokedReader, RevokedRow

# More changed rows than this and a full read is cheaper than reading them by serial.
FULL_READ_ABOVE = 20_000

# How long a generation waits for another backend's generation of the same scope: a CRL of a
# million entries takes seconds to make; this only bounds a stuck peer.
SCOPE_WAIT = 300.0
# Generations at once in one process on PostgreSQL: each holds a pooled connection for its scope
# lock while it reads through others, so an unbounded number (one per shard being revoked in)
# could take the whole pool and wait on each other for a second connection. Generations are
# CPU-bound in one interpreter anyway; a few at once lose nothing.
CONCURRENT_GENERATIONS = 4

log = logging.getLogger("shirushi.crl")

# The root's ARL: CA certificates change rarely; BR 4.9.7 asks for one at least every 12 months.
ARL_VALIDITY = dt.timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class Published:
    issuer: str  # "issuing-ca" or "root"
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    path: Path
    rows_read: int = 0  # full rows read from the store; the other entries came from memory
    shard: int = 0  # 0: the issuer's full CRL


def repository_dir(settings: Settings) -> Path:
    """Files the repository serves (CRLs); CA certificates come from CertificatePaths."""
    return settings.layout.repository


def crl_path(settings: Settings, issuer_name: str, shard: int = 0) -> Path:
    return repository_dir(settings) / f"{crl_name(issuer_name, shard)}.crl"


def distribution_point(settings: Settings, issuer_name: str, shard: int) -> str | None:
    """The URL a CRL's issuingDistributionPoint names: the one in its certificates' CRL
    Distribution Point. None for the root's ARL, which has a single, complete scope."""
    if issuer_name == ROOT:
        return None
    return crl_url(settings.repository.url, issuer_name, shard)


class CRLService:
    def __init__(self, settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.paths = CertificatePaths(settings.data_path)
        self._reader = RevokedReader(store.engine)
        self._guard = threading.Lock()  # over the two dicts below
        # Per CRL scope: (issuer name, shard).
        self._entries: dict[tuple[str, int], EntrySet] = {}
        self._groups: dict[tuple[str, int], GroupCommit[Published]] = {}
        self._signers: dict[str, Signer] = {}
        self.archive = CrlArchive(ArchiveIndex(store.engine))
        self._imported: set[tuple[str, int]] = set()  # scopes whose file archive was looked at
        self._generating = threading.BoundedSemaphore(CONCURRENT_GENERATIONS)

    def issuer_name(self, issuer_id: str) -> str:
        for row in self.store.issuers():
            if row.id == issuer_id:
                return row.name
        raise StateError(f"unknown issuer {issuer_id}")

    def shards(self, issuer_name: str) -> list[int]:
        """The CRLs this issuer publishes: [0] for the root; the full CRL and every shard that
        is configured or that certificates may name for the issuing CA."""
        if issuer_name == ROOT:
            return [0]
        row = self.store.issuer(issuer_name)
        in_use = 0 if row is None else self.store.crls.highest_shard(row.id)
        return published_shards(self.settings.crl.shards, in_use)

    def urls(self, issuer_name: str) -> list[str]:
        """Every CRL URL of this issuer, as disclosed to the CCADB (policy 6.2: the same strings
        as in the certificates)."""
        if issuer_name == ROOT:
            return [crl_url(self.settings.repository.url, ROOT, 0)]
        return [crl_url(self.settings.repository.url, issuer_name, s) for s in self.shards(issuer_name)]

    def generate(self, issuer_name: str = ISSUING, *, scheduled: bool, shard: int = 0) -> Published:
        """Make, publish and record the next CRL of `issuer_name` ("issuing-ca" or "root") and `shard`.

        One generation at a time per CRL scope, across processes and backends (serve's
        schedule, revocations on any backend, CLI commands): otherwise a CRL that read the
        revocations first could be numbered and published after one that read them later, and
        drop an entry the earlier-published CRL listed (RFC 5280 5.2.3: numbers increase).
        """
        if shard and issuer_name == ROOT:
            raise StateError("the root's ARL has no shards")
        with self._scope(issuer_name, shard):
            return self._generate(issuer_name, shard, scheduled=scheduled)

    def _scope(self, issuer_name: str, shard: int) -> contextlib.AbstractContextManager[None]:
        """The lock of one CRL scope: the database's on PostgreSQL, where several backends may
        share it (`store/locks.py`); a file lock in the data directory on SQLite (one machine)."""
        name = crl_name(issuer_name, shard)
        if is_postgresql(self.store.engine):
            return self._database_scope(f"crl {name}")
        return _exclusive(repository_dir(self.settings) / f".{name}.lock")

    @contextlib.contextmanager
    def _database_scope(self, text: str) -> Iterator[None]:
        with self._generating, scope_lock(self.store.engine, text, timeout=SCOPE_WAIT):
            yield

    def generate_all(self, issuer_name: str = ISSUING, *, scheduled: bool) -> list[Published]:
        """The next CRL of every shard of `issuer_name` (`shards`)."""
        return [self.generate(issuer_name, scheduled=scheduled, shard=s) for s in self.shards(issuer_name)]

    def prune_archive(self, issuer_name: str = ISSUING) -> list[Pruned]:
        """Apply `crl.archive_retention_years` at the clock's now to every shard of the issuer,
        each under its generation lock (so no CRL of the shard is archived meanwhile)."""
        row = self.store.issuer(issuer_name)
        if row is None:
            return []
        now, years = self.clock.now(), self.settings.crl.archive_retention_years
        out = []
        for shard in self.shards(issuer_name):
            with self._scope(issuer_name, shard):
                self._import_legacy(issuer_name, row.id, shard)
                out.append(self.archive.prune(row.id, shard, now=now, years=years))
        return out

    def _import_legacy(self, issuer_name: str, issuer_id: str, shard: int) -> None:
        """Once per process and scope: CRLs archived as files by earlier versions move into the
        archive (the caller holds the scope's lock)."""
        if (issuer_name, shard) in self._imported:
            return
        directory = self.settings.layout.crl_archive(crl_name(issuer_name, shard))
        self.archive.import_legacy(issuer_id, shard, directory, at=self.clock.now())
        self._imported.add((issuer_name, shard))

    def stale(self, issuer_name: str) -> list[int]:
        """The shards of `issuer_name` without a current scheduled CRL (`is_current`)."""
        return [s for s in self.shards(issuer_name) if not self.is_current(issuer_name, s)]

    def after_revocation(self, issuer_name: str, shards: Sequence[int] | None = None) -> list[Published]:
        """CRLs listing every revocation committed before this call (group commit, `group.py`),
        one per shard in `shards`; None: every shard with pending CRL work in the outbox.

        A revocation regenerates only its own shard. Concurrent callers in this process share
        one generation per shard; the outbox rows asking for a CRL of a shard are marked done by
        whichever generation of that shard covers them.
        """
        if shards is None:
            row = self.store.issuer(issuer_name)
            shards = [] if row is None else sorted(self._reader.pending_crl_work(row.id))
        published = []
        for shard in sorted(set(shards)):
            key = (issuer_name, 0 if issuer_name == ROOT else shard)
            with self._guard:
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = GroupCommit(
                        functools.partial(self.generate, key[0], scheduled=False, shard=key[1])
                    )
            published.append(group.request())
        return published

    def _signer(self, issuer_name: str) -> Signer:
        # Opened once: loading the key costs more than signing a CRL.
        with self._guard:
            signer = self._signers.get(issuer_name)
            if signer is None:
                signer = self._signers[issuer_name] = self.keys.open(issuer_name)
            return signer

    def _changed(
        self, entries: EntrySet, issuer_id: str, shard: int, work: list[OutboxRow], *, scheduled: bool
    ) -> list[int] | None:
        """The serials whose entries may differ from the memo's; None when all must be read."""
        if scheduled or not entries.last_number or any(w.serial is None for w in work):
            return None  # the daily CRL reads everything, so the memo cannot drift for long
        if entries.last_number != self._reader.latest_crl_number(issuer_id, shard):
            return None  # another process made a CRL: it may have discharged changes we missed
        # Revoked rows that came without outbox rows (inserted directly into the table).
        inserted = self._reader.owed_since(issuer_id, entries.last_certificate_id, FULL_READ_ABOVE, shard=shard)
        if inserted is None:
            return None
        return sorted({w.serial for w in work if w.serial is not None} | set(inserted))

    def _entry_set(self, issuer_name: str, shard: int) -> EntrySet:
        with self._guard:
            entries = self._entries.get((issuer_name, shard))
            if entries is None:
                entries = self._entries[(issuer_name, shard)] = EntrySet(arl=issuer_name == ROOT)
            return entries

    def _generate(self, issuer_name: str, shard: int, *, scheduled: bool) -> Published:
        row = self.store.issuer(issuer_name)
        cert = self.paths.load(issuer_name)
        if row is None or cert is None:
            raise StateError(f"the CA is not initialised in {self.settings.data_path}: run `shirushi init`")
        signer = self._signer(issuer_name)
        arl = issuer_name == ROOT
        # Before numbering: numbers archived as files by earlier versions must count as archived.
        self._import_legacy(issuer_name, row.id, shard)

        def read(serials: Sequence[int] | None) -> list[RevokedRow]:
            return self._reader.entries(row.id, serials, shard=shard)

        this_update = self.clock.now()
        validity = ARL_VALIDITY if arl else self.settings.crl.validity
        next_update = this_update + validity
        # Read before the entries: every revocation these rows stand for is committed (same
        # transaction), so the entries read next include it and this CRL discharges them.
        work = self._reader.pending_crl_work(row.id).get(shard, [])
        top = self._reader.last_certificate_id()
        entries = self._entry_set(issuer_name, shard)
        changed = self._changed(entries, row.id, shard, work, scheduled=scheduled)
        listing = entries.refresh(changed, read, this_update=this_update, scheduled=scheduled)
        number = self.store.crls.allocate_number(
            row.id,
            this_update=this_update,
            next_update=next_update,
            scheduled=scheduled,
            shard=shard,
            reuse_unarchived=True,  # we hold the scope's lock (`generate`)
        )
        der = sign_crl(
            issuer=cert,
            signer=signer,
            number=number,
            this_update=this_update,
            next_update=next_update,
            revoked=listing.revoked,
            arl=arl,
            distribution_point=distribution_point(self.settings, issuer_name, shard),
        )
        path = crl_path(self.settings, issuer_name, shard)

        def archive(der: bytes) -> None:
            self.archive.put(
                row.id, shard, der, number=number, this_update=this_update, next_update=next_update, at=self.clock.now()
            )

        publish(der, path=path, number=number, archive=archive)
        self.store.crls.published(
            row.id,
            number,
            entries=listing.entries,
            sha256=hashlib.sha256(der).hexdigest(),
            at=self.clock.now(),
            shown_after_expiry=list(listing.first_shown_after_expiry),
            outbox_done=[w.id for w in work],
            shard=shard,
        )
        entries.forget(listing.first_shown_after_expiry)
        entries.last_number, entries.last_certificate_id = number, top
        log.info(
            "crl published",
            extra={
                "issuer": issuer_name,
                "shard": shard,
                "number": number,
                "entries": listing.entries,
                "rows_read": listing.rows_read,
                "this_update": this_update,
                "next_update": next_update,
                "scheduled": scheduled,
                "path": str(path),
            },
        )
        metrics().crls_published.labels(issuer_name).inc()
        return Published(
            issuer_name,
            number,
            this_update,
            next_update,
            listing.entries,
            path,
            rows_read=listing.rows_read,
            shard=shard,
        )

    def is_current(self, issuer_name: str, shard: int = 0) -> bool:
        """True when a scheduled CRL of that shard was published within `crl.interval` (so
        `serve` needs none now)."""
        row = self.store.issuer(issuer_name)
        if row is None or not crl_path(self.settings, issuer_name, shard).exists():
            return False
        # Only scheduled CRLs count: those issued on revocation do not retire expired entries
        # (RFC 5280 3.3), so a CA revoking daily must still publish its daily scheduled CRL.
        last = self.store.crls.last_scheduled(row.id, shard)
        if last is None:
            return False
        interval = self.settings.crl.interval if issuer_name == ISSUING else ARL_VALIDITY / 2
        return bool(self.clock.now() - last.this_update < interval)

    def current(self, issuer_name: str, shard: int = 0) -> x509.CertificateRevocationList | None:
        try:
            return x509.load_der_x509_crl(crl_path(self.settings, issuer_name, shard).read_bytes())
        except FileNotFoundError:
            return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
