"""`shirushi import NAME ...`: an outside CA's index, certificates or CRL into the store, then
their OCSP responses into Redis. Does I/O through the backend.

What a source shows is compared with what the store knows (`decide`, pure): certificates not
seen before are added, revocations not seen before are recorded; nothing is ever removed or
unrevoked (a line missing from a truncated index is not a change). The store commits the whole
import in one transaction (`store/outside.py`), then the new and changed responses are signed:
everything, the first time (the issuer's cache is not complete yet), else only what changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shirushi.outside import registry
from shirushi.store import outside as records
from shirushi.store.outside import Changes, Known, Seen
from shirushi.store.records import IssuerRow

if TYPE_CHECKING:
    from shirushi.backend import Backend

log = logging.getLogger("shirushi.outside")


@dataclasses.dataclass(frozen=True)
class Report:
    """What one import did, and the problems it reported without stopping."""

    issuer: str
    seen: int
    new: int
    revoked: int
    completed: int
    kept_revoked: int  # shown as not revoked by the source, kept revoked here
    problems: tuple[str, ...] = ()
    signed: int = 0
    pending: tuple[str, ...] = ()  # why responses are not (all) in Redis yet

    def summary(self) -> str:
        return (
            f"{self.issuer}: {self.seen} seen, {self.new} new, {self.revoked} newly revoked, "
            f"{self.completed} completed with their certificate, {len(self.problems)} problem(s)"
        )


def decide(known: dict[int, Known], seen: Iterable[Seen]) -> tuple[Changes, int, int]:
    """(changes, certificates seen, revocations the source no longer shows). Pure."""
    new: dict[int, Seen] = {}
    revoke: dict[int, Seen] = {}
    complete: dict[int, Seen] = {}
    count = kept = 0
    for item in seen:
        count += 1
        have = known.get(item.serial)
        if have is None:
            earlier = new.get(item.serial)
            # The same serial twice in one source: a revocation wins, nothing is lost.
            if earlier is None or (earlier.revoked_at is None and item.revoked_at is not None):
                new[item.serial] = (
                    item
                    if earlier is None or not earlier.der
                    else dataclasses.replace(
                        item, der=earlier.der, not_before=earlier.not_before, spki_sha256=earlier.spki_sha256
                    )
                )
            continue
        if item.revoked_at is not None and not have.revoked:
            revoke.setdefault(item.serial, item)
        elif item.revoked_at is None and have.revoked:
            kept += 1
        if item.der and not have.has_der:
            complete.setdefault(item.serial, item)
    return Changes(list(new.values()), list(revoke.values()), list(complete.values())), count, kept


def run(
    backend: Backend,
    row: IssuerRow,
    seen: Iterable[Seen],
    problems: list[str],
    source: dict[str, Any],
    *,
    crl: tuple[int | None, dt.datetime] | None = None,
) -> Report:
    """Apply one source's view of `row`'s certificates and sign what changed.

    `problems` is filled while `seen` is consumed (a streaming parser's bad lines).
    """
    store = backend.store
    changes, count, kept = decide(records.known(store, row.id), seen)
    now = backend.clock.now()
    records.apply(store, row.id, changes, now, source, crl)
    report = Report(
        row.name,
        count,
        len(changes.new),
        len(changes.revoke) + sum(1 for s in changes.new if s.revoked_at is not None),
        len(changes.complete),
        kept,
        tuple(problems),
    )
    log.info("import", extra={"issuer": row.name, "new": report.new, "revoked": report.revoked, **source})
    return sign(backend, row, report, [s.serial for s in (*changes.new, *changes.complete)])


def sign(backend: Backend, row: IssuerRow, report: Report, serials: list[int]) -> Report:
    """Sign what the import changed (revocations through the outbox, so none is lost)."""
    from shirushi.errors import ShirushiError

    if not (report.new or report.revoked or report.completed):
        return report
    presigner = backend.outside_presigner(row.id)
    if presigner is None:
        note = (
            f"no signer certificate yet: responses are signed once `shirushi issuer signer-cert {row.name}` installs it"
        )
        backend.store.outbox.done(
            [w.id for w in backend.store.outbox.pending() if w.issuer_id == row.id], backend.clock.now()
        )
        return dataclasses.replace(report, pending=(note,))
    try:
        pending = tuple(backend.drain_outbox())
        if backend.writer.is_complete(row.id):
            rows = backend.store.statuses_of(row.id, serials)
            live = [r for r in rows if r.not_after > backend.clock.now()]
            if live:
                presigner.presign(live, announce=True)
            signed = len(live)
        else:
            signed = presigner.full_load()
    except ShirushiError as exc:
        return dataclasses.replace(report, pending=(f"responses not yet in Redis ({exc}); `serve` finishes it",))
    return dataclasses.replace(report, signed=signed, pending=pending)


def issuer(backend: Backend, name: str) -> IssuerRow:
    return registry.outside_issuer(backend.store, name)
