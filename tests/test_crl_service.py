"""CRL generation through the store: numbering across restarts, expiry walk, archive, ARL."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from shirushi import config
from shirushi.backend import Backend
from shirushi.clock import FrozenClock
from shirushi.crl.service import crl_path
from support.pki import make_csr

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def make_backend(data: Path, redis_url: str, clock: FrozenClock) -> Backend:
    settings = config.load(
        None,
        environ={"SHIRUSHI_DATA_DIR": str(data), "SHIRUSHI_REDIS__URL": redis_url, "SHIRUSHI_PRESIGN__WORKERS": "1"},
    )
    return Backend(settings, clock)


@pytest.fixture
def setup(tmp_path: Path, redis_url: str) -> Iterator[tuple[Backend, FrozenClock]]:
    clock = FrozenClock(T0)
    b = make_backend(tmp_path / "data", redis_url, clock)
    b.init()
    yield b, clock
    b.close()


def listed(b: Backend, serial: int) -> bool:
    crl = b.crls.current("issuing-ca")
    assert crl is not None
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_entry_leaves_after_one_scheduled_crl_beyond_expiry(setup: tuple[Backend, FrozenClock]) -> None:
    """RFC 5280 3.3 / BR 7.2: listed until a scheduled CRL issued after notAfter has shown it."""
    b, clock = setup
    cert = b.authority.issue(make_csr(), days=2).certificate
    serial = cert.serial_number
    b.revoker.revoke(serial, "superseded")  # publishes an (unscheduled) CRL
    assert listed(b, serial)
    clock.advance(24 * H)
    b.crls.generate("issuing-ca", scheduled=True)
    assert listed(b, serial)  # still valid: listed
    clock.set(cert.not_valid_after_utc + H)  # expired now
    other = b.authority.issue(make_csr()).certificate.serial_number
    b.revoker.revoke(other, "cessationOfOperation")  # unscheduled CRL after expiry: does not count
    assert listed(b, serial)
    b.crls.generate("issuing-ca", scheduled=True)  # the one scheduled CRL after expiry
    assert listed(b, serial)
    clock.advance(24 * H)
    b.crls.generate("issuing-ca", scheduled=True)
    assert not listed(b, serial)  # dropped
    assert listed(b, other)


def test_numbers_increase_across_restarts_and_are_archived(setup: tuple[Backend, FrozenClock], redis_url: str) -> None:
    b, clock = setup
    numbers = [b.crls.generate("issuing-ca", scheduled=True).number for _ in range(3)]
    again = make_backend(b.settings.data_path, redis_url, clock)
    numbers.append(again.crls.generate("issuing-ca", scheduled=True).number)
    again.close()
    assert numbers == sorted(set(numbers)) and numbers[0] >= 1
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    assert b.crls.archive.numbers(issuer.id, 0)[-4:] == numbers
    for number in numbers:
        crl = x509.load_der_x509_crl(b.crls.archive.load(issuer.id, 0, number))
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    assert b.crls.archive.load(issuer.id, 0, numbers[-1]) == crl_path(b.settings, "issuing-ca").read_bytes()


def test_crl_validity_and_schedule(setup: tuple[Backend, FrozenClock]) -> None:
    b, clock = setup
    published = b.crls.generate("issuing-ca", scheduled=True)
    assert published.next_update - published.this_update == 96 * H
    assert b.crls.is_current("issuing-ca")
    clock.advance(23 * H)
    assert b.crls.is_current("issuing-ca")
    clock.advance(2 * H)
    assert not b.crls.is_current("issuing-ca")


def test_root_arl_covers_the_issuing_ca(setup: tuple[Backend, FrozenClock], tmp_path: Path) -> None:
    b, _ = setup
    published = b.crls.generate("root", scheduled=True)
    root = x509.load_pem_x509_certificate((b.settings.data_path / "certs" / "root.pem").read_bytes())
    crl = x509.load_der_x509_crl(published.path.read_bytes())
    assert crl.issuer == root.subject
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    result = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(published.path),
            "-CAfile",
            str(b.settings.data_path / "certs" / "root.pem"),
            "-noout",
        ],
        capture_output=True,
        text=True,
    )
    assert "verify OK" in result.stdout + result.stderr


def test_crls_on_revocation_do_not_replace_the_scheduled_one(setup: tuple[Backend, FrozenClock]) -> None:
    """A CA revoking every day still publishes its daily scheduled CRL (which retires expired entries)."""
    b, clock = setup
    b.crls.generate("issuing-ca", scheduled=True)
    for _ in range(3):
        clock.advance(12 * H)
        b.revoker.revoke(b.authority.issue(make_csr()).certificate.serial_number, "superseded")
    assert not b.crls.is_current("issuing-ca")


def test_ca_certificates_are_not_revoked_by_the_subscriber_use_case(setup: tuple[Backend, FrozenClock]) -> None:
    from shirushi.errors import PolicyError

    b, _ = setup
    issuing = x509.load_pem_x509_certificate((b.settings.data_path / "certs" / "issuing-ca.pem").read_bytes())
    signer = x509.load_pem_x509_certificate((b.settings.data_path / "certs" / "ocsp-signer.pem").read_bytes())
    for cert, kind in ((issuing, "ca"), (signer, "ocsp-signer")):
        with pytest.raises(PolicyError, match=f"CA's own {kind} certificate"):
            b.revoker.revoke(cert.serial_number, "superseded")


def test_key_compromise_upgrades_earlier_revocations(setup: tuple[Backend, FrozenClock]) -> None:
    """BR 7.2.2: evidence of key compromise updates an entry revoked for another reason."""
    b, clock = setup
    record = b.authority.issue(make_csr()).record
    b.revoker.revoke(record.serial, "superseded")
    first = b.store.certificate(record.serial)
    assert first is not None
    clock.advance(H)
    results = b.revoker.revoke_many([first], "keyCompromise", requested_by="test")
    assert [r.record.revocation_reason for r in results] == ["keyCompromise"]
    crl = b.crls.current("issuing-ca")
    assert crl is not None
    entry = crl.get_revoked_certificate_by_serial_number(record.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert entry.revocation_date_utc == T0  # the original date is kept without a compromise time
