"""Bulk revocation by serial (mass revocation events, BR 4.9.1.1): the use case.

One call takes up to `MAX_SERIALS` serials and one reason. Serials are sorted into what happened
to each: revoked now, already revoked, unknown, or refused (not a subscriber certificate,
expired, or issued under several issuers); a bad serial never fails the rest. The revocations
are committed in one transaction (`store.bulk.revoke_batch`); then the follow-up runs as for a
single revocation: OCSP responses re-signed (over the presign worker processes for a large
batch) and written to Redis, then one CRL per issuer concerned. The call returns after that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from shirushi.clock import Clock
from shirushi.errors import InputError
from shirushi.followup import FollowUp, Pending
from shirushi.metrics.registry import metrics
from shirushi.revocation import audit_detail, check_reason
from shirushi.store import CertificateRecord, Store
from shirushi.store.bulk import BatchItem, certificates_by_serial, revoke_batch

# Bounds one request's transaction and memory; a larger event is several calls.
MAX_SERIALS = 10_000


@dataclasses.dataclass(frozen=True)
class BulkResult:
    revoked: list[CertificateRecord]
    already_revoked: list[int]
    unknown: list[int]
    refused: dict[int, str]  # serial -> why
    pending: Pending


class BulkRevoker:
    def __init__(self, store: Store, clock: Clock, followup: FollowUp) -> None:
        self.store = store
        self.clock = clock
        self.followup = followup

    def revoke(self, serials: Sequence[int], reason: str, *, requested_by: str) -> BulkResult:
        check_reason(reason, by_subscriber=False)
        if len(serials) > MAX_SERIALS:
            raise InputError(f"{len(serials)} serials in one call; at most {MAX_SERIALS}")
        unique = list(dict.fromkeys(serials))
        now = self.clock.now()
        found = certificates_by_serial(self.store, unique)
        items: list[BatchItem] = []
        already: list[int] = []
        unknown: list[int] = []
        refused: dict[int, str] = {}
        for serial in unique:
            records = found.get(serial, [])
            if not records:
                unknown.append(serial)
                continue
            if len(records) > 1:
                refused[serial] = "the serial exists under several issuers; revoke it by its own route"
                continue
            record = records[0]
            if record.kind != "server":
                refused[serial] = f"the CA's own {record.kind} certificate, not a subscriber certificate"
                continue
            # BR 7.2.2: new key-compromise evidence updates a revocation made for another reason.
            replace = (
                record.revoked_at is not None
                and reason == "keyCompromise"
                and record.revocation_reason != "keyCompromise"
            )
            if record.revoked_at is not None and not replace:
                already.append(serial)
                continue
            if record.not_after < now:
                refused[serial] = "expired; expired certificates are not revoked"
                continue
            revoked_at = record.revoked_at if replace and record.revoked_at is not None else now
            audit: dict[str, object] = {
                **audit_detail(reason, requested_by, now, revoked_at, record.revocation_reason),
                "bulk": True,
            }
            items.append(BatchItem(record, reason, revoked_at, audit, replace))
        done = revoke_batch(self.store, items, now) if items else []
        if done:
            metrics().revocations.labels(reason).inc(len(done))
        made = {(r.issuer_id, r.serial) for r in done}
        # Revoked by someone else between our read and our transaction.
        already += [i.record.serial for i in items if (i.record.issuer_id, i.record.serial) not in made]
        pending = self.followup.revoked(done) if done else Pending()
        return BulkResult(done, already, unknown, refused, pending)
