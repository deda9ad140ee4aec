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
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509

from shirushi.ca.authority import ISSUING, ROOT, CertificatePaths
from shirushi.clock import Clock
from shirushi.config import Settings, parse_duration
from shirushi.crl.build import build_crl
from shirushi.crl.publish import publish
from shirushi.crl.selection import Revocation, select_entries
from shirushi.errors import StateError
from shirushi.signing import KeyStore
from shirushi.store import Store

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


def repository_dir(settings: Settings) -> Path:
    """Files the repository serves (CRLs); CA certificates come from CertificatePaths."""
    return settings.data_path / "repository"


def crl_path(settings: Settings, issuer_name: str) -> Path:
    return repository_dir(settings) / f"{issuer_name}.crl"


class CRLService:
    def __init__(self, settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.paths = CertificatePaths(settings.data_path)

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

    def _generate(self, issuer_name: str, *, scheduled: bool) -> Published:
        row = self.store.issuer(issuer_name)
        cert = self.paths.load(issuer_name)
        if row is None or cert is None:
            raise StateError(f"the CA is not initialised in {self.settings.data_path}: run `shirushi init`")
        signer = self.keys.open(issuer_name)
        arl = issuer_name == ROOT
        this_update = self.clock.now()
        validity = ARL_VALIDITY if arl else parse_duration(self.settings.crl.validity)
        next_update = this_update + validity
        revocations = [
            Revocation(int(serial, 16), revoked_at, reason or "unspecified", not_after, False)
            for serial, revoked_at, reason, not_after in self.store.revoked_entries(row.id)
        ]
        selection = select_entries(revocations, this_update=this_update, scheduled=scheduled)
        number = self.store.allocate_crl_number(
            row.id, this_update=this_update, next_update=next_update, scheduled=scheduled
        )
        der = build_crl(
            issuer=cert,
            signer=signer,
            number=number,
            this_update=this_update,
            next_update=next_update,
            entries=selection.entries,
            arl=arl,
        )
        path = crl_path(self.settings, issuer_name)
        publish(der, path=path, archive_dir=self.settings.data_path / "archive" / "crl" / issuer_name, number=number)
        self.store.crl_published(
            row.id,
            number,
            entries=len(selection.entries),
            sha256=hashlib.sha256(der).hexdigest(),
            at=self.clock.now(),
            shown_after_expiry=[format(s, "x") for s in selection.first_shown_after_expiry],
        )
        log.info(
            "crl published",
            extra={
                "issuer": issuer_name,
                "number": number,
                "entries": len(selection.entries),
                "this_update": this_update,
                "next_update": next_update,
                "scheduled": scheduled,
                "path": str(path),
            },
        )
        return Published(issuer_name, number, this_update, next_update, len(selection.entries), path)

    def is_current(self, issuer_name: str) -> bool:
        """True when a scheduled CRL was published within `crl.interval` (so `serve` needs none now)."""
        row = self.store.issuer(issuer_name)
        if row is None or not crl_path(self.settings, issuer_name).exists():
            return False
        # Only scheduled CRLs count: those issued on revocation do not retire expired entries
        # (RFC 5280 3.3), so a CA revoking daily must still publish its daily scheduled CRL.
        last = self.store.last_crl(row.id, scheduled=True)
        if last is None:
            return False
        interval = parse_duration(self.settings.crl.interval) if issuer_name == ISSUING else ARL_VALIDITY / 2
        return bool(self.clock.now() - last["this_update"] < interval)

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
