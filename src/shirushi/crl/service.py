"""CRL generation as a use case: select entries, number, sign, publish, archive, record.

Per issuer: the issuing CA's CRL (subscriber certificates) and the root's ARL (CA certificates).
Published into the repository directory at the names the certificates' CRL Distribution Points
use; archived by number (policy 5.5.1). Does I/O: store, key backend, files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from shirushi.ca.hierarchy import ISSUING, ROOT, CertificatePaths
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.crl.build import sign_crl
from shirushi.crl.entries import EntrySet
from shirushi.crl.group import GroupCommit
from shirushi.crl.publish import publish
from shirushi.errors import StateError
from shirushi.metrics.registry import metrics
from shirushi.signing import KeyStore, Signer
from shirushi.store import Store
from shirushi.store.records import OutboxRow
from shirushi.store.revoked import RevokedReader, RevokedRow

# More changed rows than this and a full read is cheaper than reading them by serial.
FULL_READ_ABOVE = 20_000

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


def repository_dir(settings: Settings) -> Path:
    """Files the repository serves (CRLs); CA certificates come from CertificatePaths."""
    return settings.layout.repository


def crl_path(settings: Settings, issuer_name: str) -> Path:
    return repository_dir(settings) / f"{issuer_name}.crl"


class CRLService:
    def __init__(self, settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.paths = CertificatePaths(settings.data_path)
        self._reader = RevokedReader(store.engine)
        self._guard = threading.Lock()  # over the two dicts below
        self._entries: dict[str, EntrySet] = {}
        self._groups: dict[str, GroupCommit[Published]] = {}
        self._signers: dict[str, Signer] = {}

    def issuer_name(self, issuer_id: str) -> str:
        for row in self.store.issuers():
            if row.id == issuer_id:
                return row.name
        raise StateError(f"unknown issuer {issuer_id}")

    def generate(self, issuer_name: str = ISSUING, *, scheduled: bool) -> Published:
        """Make, publish and record the next CRL of `issuer_name` ("issuing-ca" or "root").

        One generation at a time per issuer, across processes (serve's schedule, CLI commands):
        otherwise a CRL that read the revocations first could be numbered and published after
        one that read them later, and drop an entry the earlier-published CRL listed.
        """
        with _exclusive(repository_dir(self.settings) / f".{issuer_name}.lock"):
            return self._generate(issuer_name, scheduled=scheduled)

    def after_revocation(self, issuer_name: str) -> Published:
        """A CRL listing every revocation committed before this call (group commit, `group.py`).

        Concurrent callers in this process share one generation; the outbox rows asking for a
        CRL of this issuer are marked done by whichever generation covers them.
        """
        with self._guard:
            group = self._groups.get(issuer_name)
            if group is None:
                group = self._groups[issuer_name] = GroupCommit(lambda: self.generate(issuer_name, scheduled=False))
        return group.request()

    def _signer(self, issuer_name: str) -> Signer:
        # Opened once: loading the key costs more than signing a CRL.
        with self._guard:
            signer = self._signers.get(issuer_name)
            if signer is None:
                signer = self._signers[issuer_name] = self.keys.open(issuer_name)
            return signer

    def _changed(
        self, entries: EntrySet, issuer_id: str, work: list[OutboxRow], *, scheduled: bool
    ) -> list[int] | None:
        """The serials whose entries may differ from the memo's; None when all must be read."""
        if scheduled or not entries.last_number or any(w.serial is None for w in work):
            return None  # the daily CRL reads everything, so the memo cannot drift for long
        if entries.last_number != self._reader.latest_crl_number(issuer_id):
            return None  # another process made a CRL: it may have discharged changes we missed
        # Revoked rows that came without outbox rows (inserted directly into the table).
        inserted = self._reader.owed_since(issuer_id, entries.last_certificate_id, FULL_READ_ABOVE)
        if inserted is None:
            return None
        return sorted({w.serial for w in work if w.serial is not None} | set(inserted))

    def _entry_set(self, issuer_name: str) -> EntrySet:
        with self._guard:
            entries = self._entries.get(issuer_name)
            if entries is None:
                entries = self._entries[issuer_name] = EntrySet(arl=issuer_name == ROOT)
            return entries

    def _generate(self, issuer_name: str, *, scheduled: bool) -> Published:
        row = self.store.issuer(issuer_name)
        cert = self.paths.load(issuer_name)
        if row is None or cert is None:
            raise StateError(f"the CA is not initialised in {self.settings.data_path}: run `shirushi init`")
        signer = self._signer(issuer_name)
        arl = issuer_name == ROOT

        def read(serials: Sequence[int] | None) -> list[RevokedRow]:
            return self._reader.entries(row.id, serials)

        this_update = self.clock.now()
        validity = ARL_VALIDITY if arl else self.settings.crl.validity
        next_update = this_update + validity
        # Read before the entries: every revocation these rows stand for is committed (same
        # transaction), so the entries read next include it and this CRL discharges them.
        work = self._reader.pending_crl_work(row.id)
        top = self._reader.last_certificate_id()
        entries = self._entry_set(issuer_name)
        changed = self._changed(entries, row.id, work, scheduled=scheduled)
        listing = entries.refresh(changed, read, this_update=this_update, scheduled=scheduled)
        number = self.store.crls.allocate_number(
            row.id, this_update=this_update, next_update=next_update, scheduled=scheduled
        )
        der = sign_crl(
            issuer=cert,
            signer=signer,
            number=number,
            this_update=this_update,
            next_update=next_update,
            revoked=listing.revoked,
            arl=arl,
        )
        path = crl_path(self.settings, issuer_name)
        publish(der, path=path, archive_dir=self.settings.layout.crl_archive(issuer_name), number=number)
        self.store.crls.published(
            row.id,
            number,
            entries=listing.entries,
            sha256=hashlib.sha256(der).hexdigest(),
            at=self.clock.now(),
            shown_after_expiry=list(listing.first_shown_after_expiry),
            outbox_done=[w.id for w in work],
        )
        entries.forget(listing.first_shown_after_expiry)
        entries.last_number, entries.last_certificate_id = number, top
        log.info(
            "crl published",
            extra={
                "issuer": issuer_name,
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
            issuer_name, number, this_update, next_update, listing.entries, path, rows_read=listing.rows_read
        )

    def is_current(self, issuer_name: str) -> bool:
        """True when a scheduled CRL was published within `crl.interval` (so `serve` needs none now)."""
        row = self.store.issuer(issuer_name)
        if row is None or not crl_path(self.settings, issuer_name).exists():
            return False
        # Only scheduled CRLs count: those issued on revocation do not retire expired entries
        # (RFC 5280 3.3), so a CA revoking daily must still publish its daily scheduled CRL.
        last = self.store.crls.last_scheduled(row.id)
        if last is None:
            return False
        interval = self.settings.crl.interval if issuer_name == ISSUING else ARL_VALIDITY / 2
        return bool(self.clock.now() - last.this_update < interval)

    def current(self, issuer_name: str) -> x509.CertificateRevocationList | None:
        try:
            return x509.load_der_x509_crl(crl_path(self.settings, issuer_name).read_bytes())
        except FileNotFoundError:
            return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
