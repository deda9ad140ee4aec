"""`serve` following outside CAs: index files reread when they change, CRLs fetched on a timer
and after their nextUpdate (`[outside]` settings). Does file, HTTP and store I/O through the
backend, on `serve`'s scheduler thread.

A revocation made with `openssl ca -revoke` (or `easyrsa revoke`) changes the index file: the
next poll (every `outside.poll_interval`) imports it, and its OCSP response is in Redis seconds
later. A failing source is logged and tried again at the next poll; it never stops the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from typing import TYPE_CHECKING

from shirushi.errors import ConflictError, ShirushiError
from shirushi.outside import importer, sources

if TYPE_CHECKING:
    from shirushi.backend import Backend

log = logging.getLogger("shirushi.outside")


class Follower:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        settings = backend.settings.outside
        self.indexes = settings.follows(settings.follow_index)
        self.crls = settings.follows(settings.follow_crl)
        self.crl_interval = settings.crl_interval
        self._stamps: dict[str, tuple[int, int, int]] = {}
        self._crl_due: dict[str, dt.datetime] = {}
        self._crl_digest: dict[str, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self.indexes or self.crls)

    def poll(self) -> None:
        """One round: every changed index, every CRL that is due."""
        for name, path in self.indexes:
            try:
                self._index(name, path)
            except ShirushiError as exc:
                log.warning("follow failed", extra={"issuer": name, "index": path, "error": str(exc)})
        now = self.backend.clock.now()
        for name, where in self.crls:
            if self._crl_due.get(where, now) > now:
                continue
            try:
                self._crl(name, where, now)
            except ShirushiError as exc:
                self._crl_due[where] = now + min(self.crl_interval, dt.timedelta(seconds=30))
                log.warning("follow failed", extra={"issuer": name, "crl": where, "error": str(exc)})

    def _index(self, name: str, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            self._stamps.pop(path, None)
            raise ShirushiError(f"cannot read index {path}: {exc.strerror}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._stamps.get(path) == stamp:
            return
        row = importer.issuer(self.backend, name)
        problems: list[str] = []
        report = importer.run(
            self.backend, row, sources.index_seen(path, problems), problems, {"source": "follow", "path": path}
        )
        self._stamps[path] = stamp
        _log(report)

    def _crl(self, name: str, where: str, now: dt.datetime) -> None:
        from cryptography import x509

        row = importer.issuer(self.backend, name)
        data = sources.read_crl(where)
        digest = hashlib.sha256(data).digest()
        due = now + self.crl_interval
        if self._crl_digest.get(where) != digest:
            number, this_update, entries = sources.crl_seen(
                data, x509.load_der_x509_certificate(row.certificate), name, where
            )
            try:
                report = importer.run(
                    self.backend, row, entries, [], {"source": "follow", "crl": where}, crl=(number, this_update)
                )
                _log(report)
            except ConflictError as exc:  # an older CRL than the last imported: keep the newer
                log.warning("follow skipped", extra={"issuer": name, "crl": where, "error": str(exc)})
            self._crl_digest[where] = digest
            next_update = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
            if next_update.next_update_utc is not None and next_update.next_update_utc > now:
                due = min(due, next_update.next_update_utc)
        self._crl_due[where] = due


def _log(report: importer.Report) -> None:
    level = logging.INFO if report.new or report.revoked or report.problems else logging.DEBUG
    log.log(level, "follow import", extra={"issuer": report.issuer, "new": report.new, "revoked": report.revoked,
                                           "problems": len(report.problems)})  # fmt: skip
    for line in report.problems:
        log.warning("follow problem", extra={"issuer": report.issuer, "problem": line})
    for line in report.pending:
        log.warning("follow pending", extra={"issuer": report.issuer, "pending": line})
