"""The OpenSSL `ca` index parser, the import decision and the signer certificate checks: pure."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi.outside import checks, importer
from shirushi.outside.index import IndexEntry, LineError, parse_index, parse_line
from shirushi.store.outside import Known, Seen

UTC = dt.UTC


def test_valid_revoked_expired_lines_both_time_forms() -> None:
    lines = [
        "V\t290306193006Z\t\t881FBB73\tunknown\t/CN=s1\n",
        "R\t20500101000000Z\t261202193010Z,keyCompromise\t02\tunknown\t/CN=s2\n",
        "E\t200101000000Z\t\t03\t03.pem\t/CN=old\n",
        "\n",
    ]
    entries = [e for e in parse_index(lines) if isinstance(e, IndexEntry)]
    assert entries[0] == IndexEntry(1, 0x881FBB73, dt.datetime(2029, 3, 6, 19, 30, 6, tzinfo=UTC), "/CN=s1")
    assert entries[1].not_after == dt.datetime(2050, 1, 1, tzinfo=UTC)
    assert entries[1].revoked_at == dt.datetime(2026, 12, 2, 19, 30, 10, tzinfo=UTC)
    assert entries[1].reason == "keyCompromise"
    assert entries[2].not_after.year == 2020 and entries[2].revoked_at is None
    assert len(entries) == 3


def test_openssl_reason_forms() -> None:
    key = parse_line(1, "R\t300101000000Z\t260101000000Z,keyTime,20251231000000Z\t0A\tunknown\t/CN=a")
    assert isinstance(key, IndexEntry) and key.reason == "keyCompromise"
    assert key.compromised_at == dt.datetime(2025, 12, 31, tzinfo=UTC)
    hold = parse_line(2, "R\t300101000000Z\t260101000000Z,holdInstruction,1.2.840.10040.2.2\t0B\tunknown\t/CN=b")
    assert isinstance(hold, IndexEntry) and hold.reason == "certificateHold"
    ca = parse_line(3, "R\t300101000000Z\t260101000000Z,CAkeyTime,20251231000000Z\t0C\tunknown\t/CN=c")
    assert isinstance(ca, IndexEntry) and ca.reason == "cACompromise"
    plain = parse_line(4, "R\t300101000000Z\t260101000000Z\t0D\tunknown\t/CN=d")
    assert isinstance(plain, IndexEntry) and plain.reason == "unspecified"


def test_bad_lines_carry_their_number_and_do_not_stop_the_rest() -> None:
    lines = [
        "V\t300101000000Z\t\t01\tunknown\t/CN=ok",
        "V\t300101000000Z\t\t02\tunknown",  # truncated
        "X\t300101000000Z\t\t03\tunknown\t/CN=x",
        "V\t301301000000Z\t\t04\tunknown\t/CN=month13",
        "R\t300101000000Z\t260101000000Z,noSuchReason\t05\tunknown\t/CN=r",
        "R\t300101000000Z\t\t06\tunknown\t/CN=norev",
        "V\t300101000000Z\t\tZZ\tunknown\t/CN=hex",
        "V\t300101000000Z\t\t08\tunknown\t/CN=last",
    ]
    out = list(parse_index(lines))
    errors = [e for e in out if isinstance(e, LineError)]
    assert [e.line for e in errors] == [2, 3, 4, 5, 6, 7]
    assert [e.serial for e in out if isinstance(e, IndexEntry)] == [1, 8]
    assert str(errors[0]).startswith("line 2: 5 tab-separated fields")


def test_decide_adds_revokes_and_never_unrevokes() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=UTC)
    known = {1: Known(False, False), 2: Known(True, False), 3: Known(False, False)}
    seen = [
        Seen(1, revoked_at=t, reason="superseded"),  # newly revoked
        Seen(2),  # shown good, stays revoked
        Seen(3, der=b"x"),  # completed with its certificate
        Seen(4),
        Seen(4, revoked_at=t, reason="keyCompromise"),  # twice: the revocation wins
    ]
    changes, count, kept = importer.decide(known, seen)
    assert count == 5 and kept == 1
    assert [s.serial for s in changes.revoke] == [1]
    assert [s.serial for s in changes.complete] == [3]
    assert [(s.serial, s.reason) for s in changes.new] == [(4, "keyCompromise")]


def _cert(
    subject: str, issuer: x509.Name, key: rsa.RSAPrivateKey, public: rsa.RSAPublicKey, *, eku: bool, days: int
) -> x509.Certificate:
    now = dt.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_signer_checks_errors_and_warnings() -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1))
        .not_valid_after(dt.datetime(2040, 1, 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    now = dt.datetime.now(UTC)
    week = dt.timedelta(days=4)
    good = _cert("R", name, ca_key, signer_key.public_key(), eku=True, days=825)
    found = checks.check_signer(good, ca, signer_key.public_key(), now, week)
    assert found.errors == ()
    assert any("825 days" in w for w in found.warnings)
    assert any("ocsp-nocheck" in w for w in found.warnings)
    assert any("not critical" in w for w in found.warnings)
    no_eku = _cert("R", name, ca_key, signer_key.public_key(), eku=False, days=30)
    assert any("OCSPSigning" in e for e in checks.check_signer(no_eku, ca, signer_key.public_key(), now, week).errors)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = checks.check_signer(good, ca, other_key.public_key(), now, week).errors
    assert any("another key" in e for e in wrong)
    short = _cert("R", name, ca_key, signer_key.public_key(), eku=True, days=2)
    assert any("sooner than" in e for e in checks.check_signer(short, ca, signer_key.public_key(), now, week).errors)
    forged = _cert("R", name, other_key, signer_key.public_key(), eku=True, days=30)
    assert any("not issued" in e for e in checks.check_signer(forged, ca, signer_key.public_key(), now, week).errors)
    assert checks.check_ca(good).errors and not checks.check_ca(ca).errors
    assert checks.check_name("easy-rsa.1") is None and checks.check_name("root") and checks.check_name("a b")
