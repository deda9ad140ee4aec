"""Follow-up work of issuances and revocations: OCSP responses into Redis, CRLs published.

The store commits each change together with outbox rows naming the work that must follow it
(`OutboxRow`). The use cases call `FollowUp` right after their commit for *their own* work:
- `issued`: the new certificate's OCSP response (BR 4.9.10);
- `revoked`: the revoked certificates' OCSP responses, then one CRL per issuer that lists them
  (group-committed: concurrent revocations share a CRL, see `crl/group.py`).
`drain` does whatever is still pending, oldest first (at start and every few seconds under
`serve`): work whose process died, or failed, after the commit. Each step says what is left
(`Pending`); nothing is marked done before it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from shirushi.clock import Clock
from shirushi.errors import ShirushiError
from shirushi.metrics.registry import metrics
from shirushi.store import CertificateRecord, Store
from shirushi.store.records import OutboxRow

if TYPE_CHECKING:
    from shirushi.crl.service import CRLService
    from shirushi.presign.presigner import Presigner

log = logging.getLogger("shirushi.followup")


@dataclasses.dataclass(frozen=True)
class Pending:
    """What is not done yet (the outbox keeps it and `serve` retries): empty when all is done.

    Iterating gives one sentence per failed step, for the CLI and the API.
    """

    ocsp: tuple[int, ...] = ()  # serials whose OCSP response is not yet in Redis
    crl: tuple[str, ...] = ()  # issuer names whose CRL is not yet published
    reasons: tuple[str, ...] = ()  # why, one per failed step

    def __bool__(self) -> bool:
        return bool(self.ocsp or self.crl)

    def __iter__(self) -> Iterator[str]:
        return iter(self.messages())

    def messages(self) -> list[str]:
        return list(self.reasons)

    def __add__(self, other: Pending) -> Pending:
        return Pending(self.ocsp + other.ocsp, self.crl + other.crl, self.reasons + other.reasons)


class FollowUp:
    """Does outbox work for the use cases and for `serve`."""

    def __init__(
        self, store: Store, clock: Clock, presigner: Callable[[], Presigner], crls: Callable[[], CRLService]
    ) -> None:
        self.store = store
        self.clock = clock
        # Both built on first use: key and worker-pool set-up; issuance never builds a CRL.
        self._presigner = presigner
        self._crls = crls
        # Outbox rows of issuances whose response is in Redis but not yet marked done. Concurrent
        # issuances mark theirs in one statement (whoever finds no flush running does it for all
        # queued); ids queued during a flush go with the next one, a drain, or close. Redoing
        # such work is harmless (the same response is signed again), losing it is impossible.
        self._done_later: list[int] = []
        self._done_lock = threading.Lock()
        self._flushing = threading.Lock()

    def issued(self, record: CertificateRecord) -> Pending:
        """The new certificate's OCSP response (BR 4.9.10), before issuance returns."""
        return self._ocsp(self.store.outbox.pending_ocsp(record.issuer_id, [record.serial]), defer_done=True)

    def revoked(self, records: Sequence[CertificateRecord]) -> Pending:
        """OCSP first (what most relying parties ask), then the CRL of each issuer concerned."""
        pending = Pending()
        started = time.monotonic()  # the revocations committed just before this call
        issuers = sorted({r.issuer_id for r in records})
        for issuer in issuers:
            serials = [r.serial for r in records if r.issuer_id == issuer]
            pending += self._ocsp(self.store.outbox.pending_ocsp(issuer, serials))
        if not pending.ocsp:
            # Written to Redis and announced on the invalidation channel: every responder's
            # view has changed (their in-process caches drop the key on the announcement).
            elapsed = time.monotonic() - started
            histogram = metrics().revocation_propagation
            for _ in records:
                histogram.observe(elapsed)
        for issuer in issuers:
            pending += self._crl(issuer)
        return pending

    def drain(self, *, min_age: float = 0.0) -> Pending:
        """Do every piece of work committed at least `min_age` seconds ago and not yet done."""
        self._flush_done()
        work = self.store.outbox.pending(older_than=self.clock.now() - dt.timedelta(seconds=min_age))
        pending = self._ocsp([w for w in work if w.kind == "ocsp"])
        for issuer in sorted({w.issuer_id for w in work if w.kind == "crl"}):
            pending += self._crl(issuer)
        return pending

    def close(self) -> None:
        try:
            self._flush_done()
        except Exception as exc:  # the next drain does that work again: nothing is lost
            log.warning("could not mark finished outbox work done: %s", exc)

    def _flush_done(self) -> None:
        with self._done_lock:
            done, self._done_later = self._done_later, []
        if done:
            self.store.outbox.done(done, self.clock.now())

    def _mark_done_later(self, ids: list[int]) -> None:
        with self._done_lock:
            self._done_later.extend(ids)
        if self._flushing.acquire(blocking=False):
            try:
                self._flush_done()
            except Exception as exc:  # the response is in Redis; at worst it is signed again
                log.warning("could not mark finished outbox work done: %s", exc)
            finally:
                self._flushing.release()

    def _ocsp(self, work: Sequence[OutboxRow], *, defer_done: bool = False) -> Pending:
        """Sign the responses of these outbox rows in one batch per issuer, announced to responders."""
        pending = Pending()
        done: list[int] = []
        issuers = sorted({w.issuer_id for w in work})
        for issuer in issuers:
            items = [w for w in work if w.issuer_id == issuer and w.serial is not None]
            ids = [w.id for w in work if w.issuer_id == issuer]
            presigner = self._presigner()
            if issuer != presigner.context().issuer_id:
                # Only the issuing CA runs an OCSP service; the root's certificates are covered
                # by its CRL (the ARL).
                done += ids
                continue
            rows = self.store.statuses_of(issuer, sorted({w.serial for w in items if w.serial is not None}))
            try:
                if rows:
                    presigner.presign(rows, announce=True)
                done += ids
            except ShirushiError as exc:
                serials = tuple(w.serial for w in items if w.serial is not None)
                pending += Pending(ocsp=serials, reasons=(f"OCSP response not yet in Redis ({exc})",))
        if defer_done:
            self._mark_done_later(done)
        else:
            self.store.outbox.done(done, self.clock.now())
        return pending

    def _crl(self, issuer_id: str) -> Pending:
        """A published CRL covering every revocation of this issuer committed so far."""
        try:
            crls = self._crls()
            crls.after_revocation(crls.issuer_name(issuer_id))
        except ShirushiError as exc:
            return Pending(crl=(issuer_id,), reasons=(f"CRL not yet published ({exc})",))
        return Pending()
