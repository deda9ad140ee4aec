"""Which revocations a CRL lists as certificates expire (RFC 5280 3.3, BR 7.2, policy 2.3).

The walk below moves a frozen clock through a certificate's expiry, issuing scheduled CRLs every
24 hours and unscheduled ones in between, really building, publishing and parsing each CRL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from shirushi.clock import FrozenClock
from shirushi.crl import CrlError, Revocation, build_crl, publish, select_entries
from support.crl_pki import EPOCH, Pki, shared_pki

DAY = dt.timedelta(days=1)


class Repository:
    """The caller's side of the contract: a store of revocations and a CRL counter.

    It persists `shown_after_expiry` only after `publish` succeeded, as the selection asks.
    """

    def __init__(self, pki: Pki, directory: Path, revocations: list[Revocation]) -> None:
        self.pki = pki
        self.directory = directory
        self.revocations = {r.serial: r for r in revocations}
        self.number = 0

    def issue(
        self, clock: FrozenClock, *, scheduled: bool, fail_publish: bool = False
    ) -> x509.CertificateRevocationList:
        this_update = clock.now()
        selection = select_entries(self.revocations.values(), this_update=this_update, scheduled=scheduled)
        self.number += 1
        der = build_crl(
            issuer=self.pki.issuing.cert,
            signer=self.pki.issuing.signer,
            number=self.number,
            this_update=this_update,
            next_update=this_update + dt.timedelta(hours=96),
            entries=selection.entries,
        )
        if fail_publish:
            # The CRL never reaches the repository: nobody saw it, so nothing may be recorded.
            return x509.load_der_x509_crl(der)
        publish(der, path=self.directory / "ca.crl", number=self.number, archive=lambda _der: None)
        for serial in selection.first_shown_after_expiry:
            self.revocations[serial] = dataclasses.replace(self.revocations[serial], shown_after_expiry=True)
        return x509.load_der_x509_crl((self.directory / "ca.crl").read_bytes())


def listed(crl: x509.CertificateRevocationList, serial: int) -> bool:
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_expiry_walk(tmp_path: Path) -> None:
    clock = FrozenClock(EPOCH)
    not_after = EPOCH + 2 * DAY  # expires exactly when the third scheduled CRL is issued
    expiring = Revocation(0xE1, EPOCH - DAY, "keyCompromise", not_after)
    long_lived = Revocation(0xA1, EPOCH - DAY, "superseded", EPOCH + 300 * DAY)
    repo = Repository(shared_pki(), tmp_path, [expiring, long_lived])

    # Day 0 and day 1: the certificate is valid; listed.
    assert listed(repo.issue(clock, scheduled=True), 0xE1)
    clock.advance(DAY)
    assert listed(repo.issue(clock, scheduled=True), 0xE1)

    # Day 2, thisUpdate == notAfter: still inside the validity period (RFC 5280 4.1.2.5 is
    # inclusive), so this scheduled CRL is not "beyond" it and does not count.
    clock.advance(DAY)
    assert listed(repo.issue(clock, scheduled=True), 0xE1)
    assert not repo.revocations[0xE1].shown_after_expiry

    # An hour after expiry a revocation triggers an unscheduled CRL: it lists the expired
    # certificate, but unscheduled CRLs do not count (RFC 5280 3.3 "regularly scheduled").
    clock.advance(dt.timedelta(hours=1))
    assert listed(repo.issue(clock, scheduled=False), 0xE1)
    assert not repo.revocations[0xE1].shown_after_expiry

    # Day 3: the first scheduled CRL after expiry. It is built but publishing fails, so it
    # does not count either.
    clock.set(EPOCH + 3 * DAY)
    assert listed(repo.issue(clock, scheduled=True, fail_publish=True), 0xE1)
    assert not repo.revocations[0xE1].shown_after_expiry

    # The retry is published: this is the one appearance after expiry that RFC 5280 3.3 demands.
    clock.advance(dt.timedelta(minutes=5))
    assert listed(repo.issue(clock, scheduled=True), 0xE1)
    assert repo.revocations[0xE1].shown_after_expiry

    # Every later CRL, scheduled or not, leaves it out; the unexpired one stays.
    clock.advance(dt.timedelta(hours=2))
    crl = repo.issue(clock, scheduled=False)
    assert not listed(crl, 0xE1)
    assert listed(crl, 0xA1)
    clock.set(EPOCH + 4 * DAY)
    crl = repo.issue(clock, scheduled=True)
    assert not listed(crl, 0xE1)
    assert [r.serial_number for r in crl] == [0xA1]
    assert not repo.revocations[0xA1].shown_after_expiry


def test_selection_reports_first_shown_dropped_and_deferred() -> None:
    t = EPOCH
    revocations = [
        Revocation(1, t - DAY, "unspecified", t + DAY),  # valid
        Revocation(2, t - 5 * DAY, "keyCompromise", t - DAY),  # expired, never shown after
        Revocation(3, t - 9 * DAY, "superseded", t - 3 * DAY, shown_after_expiry=True),
        Revocation(4, t + dt.timedelta(seconds=1), "keyCompromise", t + DAY),  # after thisUpdate
        Revocation(5, t - DAY, "superseded", t),  # notAfter == thisUpdate: not expired yet
    ]
    scheduled = select_entries(revocations, this_update=t, scheduled=True)
    assert [r.serial for r in scheduled.entries] == [1, 2, 5]
    assert scheduled.first_shown_after_expiry == (2,)
    assert scheduled.dropped == (3,)
    assert scheduled.deferred == (4,)

    unscheduled = select_entries(revocations, this_update=t, scheduled=False)
    assert [r.serial for r in unscheduled.entries] == [1, 2, 5]
    assert unscheduled.first_shown_after_expiry == ()
    assert unscheduled.dropped == (3,)


def test_selected_revocations_are_crl_entries() -> None:
    """`Selection.entries` goes straight into `build_crl` (no copies of a million objects)."""
    pki = shared_pki()
    revocation = Revocation(0x42, EPOCH - DAY, "cessationOfOperation", EPOCH + DAY)
    selection = select_entries([revocation], this_update=EPOCH, scheduled=True)
    der = build_crl(
        issuer=pki.issuing.cert,
        signer=pki.issuing.signer,
        number=1,
        this_update=EPOCH,
        next_update=EPOCH + DAY,
        entries=selection.entries,
    )
    (entry,) = x509.load_der_x509_crl(der)
    assert entry.serial_number == 0x42
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.cessation_of_operation
    )


def test_fractional_this_update_compares_at_whole_seconds() -> None:
    # A revocation in the same second as thisUpdate is listed: encoded, the two times are equal.
    revocation = Revocation(7, EPOCH.replace(microsecond=900_000), "keyCompromise", EPOCH + DAY)
    selection = select_entries([revocation], this_update=EPOCH.replace(microsecond=100_000), scheduled=True)
    assert selection.entries == (revocation,)


def test_naive_this_update_refused() -> None:
    with pytest.raises(CrlError, match="timezone-aware"):
        select_entries([], this_update=dt.datetime(2026, 1, 1), scheduled=True)
