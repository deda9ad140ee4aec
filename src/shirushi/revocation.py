"""Revocation: the rules (reasons, deadlines, no suspension) and the use case.

Order matters (policy 4.9.5, BR 4.9.1.1): the revocation is committed to the store first, with
outbox rows for the follow-up work, in one transaction; then the OCSP response is re-signed and
written to Redis (announced to responders), then the CRL is regenerated and published. If a
follow-up step fails the revocation is not lost: the outbox makes `serve` catch up, and the
result says what is pending.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING

from shirushi.clock import Clock
from shirushi.errors import ArgumentError, InputError, NotFoundError, PolicyError
from shirushi.metrics.registry import metrics
from shirushi.reasons import ALLOWED, CA_ONLY, FIVE_DAY_REASONS, REFUSED, SUBSCRIBER_REASONS
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord, Store

if TYPE_CHECKING:
    from shirushi.followup import FollowUp, Pending

log = logging.getLogger("shirushi.revocation")


def audit_detail(
    reason: str, requested_by: str, now: dt.datetime, revoked_at: dt.datetime, previous_reason: str | None
) -> dict[str, str | None]:
    """The audit record of one revocation (policy 5.4.1): who asked, when, the BR 4.9.1.1 deadline."""
    return {
        "reason": reason,
        "requested_by": requested_by,
        "requested_at": now.isoformat(),
        "deadline": deadline(reason, now).isoformat(),
        "effective_at": now.isoformat(),
        "revocation_date": revoked_at.isoformat(),
        "previous_reason": previous_reason,
    }


def deadline(reason: str, requested_at: dt.datetime) -> dt.datetime:
    days = 5 if reason in FIVE_DAY_REASONS else 1
    return requested_at + dt.timedelta(days=days)


def check_reason(reason: str, *, by_subscriber: bool) -> str:
    """Return the reason if this requester may use it; PolicyError naming the rule otherwise."""
    if reason in REFUSED:
        raise PolicyError(f"reason {reason} refused: {REFUSED[reason]}")
    if reason not in SUBSCRIBER_REASONS:
        raise PolicyError(f"unknown reason {reason!r}; use one of: {', '.join(ALLOWED)}")
    if by_subscriber and reason in CA_ONLY:
        raise PolicyError(f"reason {reason} is for the CA to choose, not the subscriber (BR 7.2.2)")
    return reason


@dataclasses.dataclass(frozen=True)
class Revoked:
    record: CertificateRecord
    pending: Pending  # follow-up steps that failed; the outbox retries them

    @property
    def key_blocked(self) -> bool:
        """Every keyCompromise revocation blocks the key in its own transaction (BR 6.1.1.3)."""
        return self.record.revocation_reason == "keyCompromise"


class Revoker:
    """The revoke use case over the store and its follow-up (re-sign OCSP, publish the CRL)."""

    def __init__(self, store: Store, clock: Clock, followup: FollowUp) -> None:
        self.store = store
        self.clock = clock
        self.followup = followup

    def revoke(
        self,
        serial: int,
        reason: str,
        *,
        at: dt.datetime | None = None,
        by_subscriber: bool = False,
        requested_by: str = "operator",
        issuer_id: str | None = None,
    ) -> Revoked:
        record = self._commit(
            serial, reason, at=at, by_subscriber=by_subscriber, requested_by=requested_by, issuer_id=issuer_id
        )
        return Revoked(record, self.followup.revoked([record]))

    def revoke_many(self, records: list[CertificateRecord], reason: str, *, requested_by: str) -> list[Revoked]:
        """Bulk revocation (policy 5.8 CA termination; every certificate with a compromised key).

        Each revocation is committed on its own; expired and already revoked ones are skipped.
        The follow-up runs once at the end (one CRL for the lot).
        """
        check_reason(reason, by_subscriber=False)
        now = self.clock.now()
        done: list[CertificateRecord] = []
        for record in records:
            # BR 7.2.2: a key compromise also updates revocations made for another reason.
            upgrade = reason == "keyCompromise" and record.revocation_reason != "keyCompromise"
            if (record.revoked_at is not None and not upgrade) or record.not_after < now:
                continue
            done.append(
                self._commit(
                    record.serial,
                    reason,
                    at=None,
                    by_subscriber=False,
                    requested_by=requested_by,
                    issuer_id=record.issuer_id,
                )
            )
        pending = self.followup.revoked(done)
        return [Revoked(r, pending) for r in done]

    def revoke_key(
        self, spki_sha256: str, reason: str, *, requested_by: str, note: str, reported: bool = False
    ) -> list[Revoked]:
        """Revoke every certificate of this CA with the key (SPKI SHA-256); with keyCompromise
        the key is also blocked, `note` saying why (BR 6.1.1.3).

        A key-compromise report (`reported`, policy 4.9.12) blocks the key first, before the
        certificates are looked up, even when this CA never certified it. Otherwise a key no
        certificate carries is an InputError and blocks nothing.
        """
        if reported:
            self.store.block_key(spki_sha256, note, self.clock.now())
            records = self.store.certificates_by_key(spki_sha256)
        else:
            records = self.store.certificates_by_key(spki_sha256)
            if not records:
                raise InputError("no certificate with that key was issued by this CA")
            if reason == "keyCompromise":
                self.store.block_key(spki_sha256, note, self.clock.now())
        return self.revoke_many(records, reason, requested_by=requested_by)

    def _commit(
        self,
        serial: int,
        reason: str,
        *,
        at: dt.datetime | None,
        by_subscriber: bool,
        requested_by: str,
        issuer_id: str | None,
    ) -> CertificateRecord:
        reason = check_reason(reason, by_subscriber=by_subscriber)
        record = self.store.certificate(serial, issuer_id)
        shown = serial_text(serial, lower=True)
        if record is None:
            raise NotFoundError(f"no certificate with serial {shown} was issued by this CA")
        if record.kind != "server":
            # CA and OCSP signer certificates follow BR 4.9.1.2 and need a new key or hierarchy
            # along with the revocation; this use case is for subscriber certificates.
            raise PolicyError(
                f"certificate {shown} is the CA's own {record.kind} certificate, not a subscriber certificate"
            )
        now = self.clock.now()
        if record.not_after < now:
            raise PolicyError(
                f"certificate {shown} expired on {record.not_after:%Y-%m-%d %H:%M:%SZ}; expired certificates "
                "are not revoked"
            )
        revoked_at = now
        if at is not None:
            # BR 7.2.2: the revocation date may be backdated to the compromise time, and only then.
            if reason != "keyCompromise":
                raise ArgumentError("at", "(backdating) is only allowed with reason keyCompromise (BR 7.2.2)")
            if at > now or at < record.not_before:
                raise ArgumentError("at", "must lie between the certificate's notBefore and now")
            revoked_at = at
        # BR 7.2.2: new key-compromise evidence updates an existing revocation's reason (and date
        # when one is given); any other second revocation is a conflict.
        replace = (
            record.revoked_at is not None and reason == "keyCompromise" and record.revocation_reason != "keyCompromise"
        )
        if replace and at is None and record.revoked_at is not None:
            revoked_at = record.revoked_at
        audit = audit_detail(reason, requested_by, now, revoked_at, record.revocation_reason)
        revoked = self.store.revoke(
            record,
            reason=reason,
            revoked_at=revoked_at,
            at=now,
            audit=audit,
            replace=replace,
            block_key=reason == "keyCompromise",  # BR 6.1.1.3: a compromised key is never certified again
        )
        metrics().revocations.labels(reason).inc()
        log.info(
            "certificate revoked",
            extra={
                "serial": serial_text(revoked.serial),
                "reason": reason,
                "revoked_at": revoked_at,
                "requested_by": requested_by,
                "updated": replace,
                "key_blocked": reason == "keyCompromise",
            },
        )
        return revoked
