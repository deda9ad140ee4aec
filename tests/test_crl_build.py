"""The hand-encoded CRL builder against pyca/cryptography, OpenSSL and pkilint (BR profile)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shirushi.asn1.crl import SHA256_WITH_RSA, encode_time, subject_der
from shirushi.crl import (
    CrlError,
    DuplicateSerialError,
    Entry,
    ProhibitedReasonError,
    build_crl,
)
from shirushi.reasons import SUBSCRIBER_REASONS
from support.crl_pki import (
    EPOCH,
    UTC,
    Pki,
    cert_pem,
    lint_crl,
    make_ca,
    openssl,
    pem,
    reference_crl,
    shared_pki,
)

NEXT = EPOCH + dt.timedelta(hours=96)  # policy 4.9.7: validity 96 hours

ALL_SUBSCRIBER_REASONS = [
    Entry(0x10, EPOCH - dt.timedelta(days=1), "unspecified"),
    Entry(0x11, EPOCH - dt.timedelta(days=2), "keyCompromise"),
    Entry(0x12, EPOCH - dt.timedelta(days=3), "affiliationChanged"),
    Entry(0x13, EPOCH - dt.timedelta(days=4), "superseded"),
    Entry(0x14, EPOCH - dt.timedelta(days=5), "cessationOfOperation"),
    Entry(0x15, EPOCH - dt.timedelta(days=6), "privilegeWithdrawn"),
    # Serial edge cases: top bit set (needs a leading zero octet) and the 20-octet maximum.
    Entry(0x80, EPOCH - dt.timedelta(seconds=1), "keyCompromise"),
    Entry(2**159 - 1, EPOCH, "superseded"),
    Entry(0x7F, dt.datetime(2000, 2, 29, 23, 59, 59, tzinfo=UTC)),
]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return shared_pki()


def rsa_public(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def crl_of(pki: Pki, entries: list[Entry], **kwargs: object) -> bytes:
    args: dict[str, object] = {
        "issuer": pki.issuing.cert,
        "signer": pki.issuing.signer,
        "number": 7,
        "this_update": EPOCH,
        "next_update": NEXT,
        "entries": entries,
    }
    args.update(kwargs)
    return build_crl(**args)  # type: ignore[arg-type]


# --- equivalence with pyca/cryptography ---------------------------------------------------------


def test_matches_pyca_builder_byte_for_byte(pki: Pki) -> None:
    ours = crl_of(pki, ALL_SUBSCRIBER_REASONS)
    theirs = reference_crl(
        issuer=pki.issuing,
        number=7,
        this_update=EPOCH,
        next_update=NEXT,
        entries=ALL_SUBSCRIBER_REASONS,
    )
    assert ours == theirs


def test_empty_crl_matches_pyca_and_has_no_revoked_certificates(pki: Pki) -> None:
    ours = crl_of(pki, [])
    assert ours == reference_crl(issuer=pki.issuing, number=7, this_update=EPOCH, next_update=NEXT, entries=[])
    crl = x509.load_der_x509_crl(ours)
    assert len(crl) == 0
    # RFC 5280 5.1.2.6: absent, not an empty SEQUENCE. The TBS after nextUpdate goes straight
    # to the [0] crlExtensions.
    tbs = crl.tbs_certlist_bytes
    next_update = encode_time(NEXT)
    after = tbs[tbs.index(next_update) + len(next_update) :]
    assert after[0] == 0xA0


def test_fields_read_back_with_pyca(pki: Pki) -> None:
    der = crl_of(pki, ALL_SUBSCRIBER_REASONS, number=2**159 - 1)
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(rsa_public(pki.issuing.cert))
    assert crl.issuer == pki.issuing.cert.subject
    assert crl.last_update_utc == EPOCH
    assert crl.next_update_utc == NEXT
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=96)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2**159 - 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == pki.issuing.ski
    assert aki.value.authority_cert_issuer is None
    assert aki.value.authority_cert_serial_number is None
    assert not crl.extensions.get_extension_for_class(x509.CRLNumber).critical
    assert [r.serial_number for r in crl] == [e.serial for e in ALL_SUBSCRIBER_REASONS]
    for entry in ALL_SUBSCRIBER_REASONS:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked is not None
        assert revoked.revocation_date_utc == entry.revoked_at
        if entry.reason == "unspecified":
            # BR 7.2.2: unspecified is expressed by leaving the reasonCode out.
            assert len(revoked.extensions) == 0
        else:
            (ext,) = revoked.extensions
            assert isinstance(ext.value, x509.CRLReason)
            assert ext.value.reason.value == entry.reason
            assert not ext.critical


def test_signature_algorithm_and_issuer_bytes(pki: Pki) -> None:
    der = crl_of(pki, ALL_SUBSCRIBER_REASONS)
    crl = x509.load_der_x509_crl(der)
    tbs = crl.tbs_certlist_bytes
    # BR 7.1.3.2.1: both AlgorithmIdentifiers byte-identical to the sha256WithRSA encoding:
    # TBS = SEQUENCE header, version v2, signature; the CRL ends with signatureAlgorithm and a
    # BIT STRING of 256 signature octets (03 82 01 01 00).
    start = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    assert tbs[start : start + 3] == b"\x02\x01\x01"
    assert tbs[start + 3 : start + 3 + len(SHA256_WITH_RSA)] == SHA256_WITH_RSA
    tail = der[-(256 + 5 + len(SHA256_WITH_RSA)) :]
    assert tail.startswith(SHA256_WITH_RSA + b"\x03\x82\x01\x01\x00")
    # BR 7.2: issuer byte-identical to the CA certificate's subject.
    name = subject_der(pki.issuing.cert)
    assert name == pki.issuing.cert.subject.public_bytes()
    assert tbs.index(name) == tbs.index(SHA256_WITH_RSA) + len(SHA256_WITH_RSA)


def test_signs_the_tbs_through_the_signer_seam(pki: Pki) -> None:
    seen: list[bytes] = []

    class Recording:
        label = "recording"

        def public_key(self) -> object:
            return pki.issuing.signer.public_key()

        def sign(self, tbs: bytes) -> bytes:
            seen.append(tbs)
            return pki.issuing.signer.sign(tbs)

    der = crl_of(pki, ALL_SUBSCRIBER_REASONS, signer=Recording())
    assert seen == [x509.load_der_x509_crl(der).tbs_certlist_bytes]


# --- times --------------------------------------------------------------------------------------


def test_utctime_through_2049_generalizedtime_from_2050(pki: Pki) -> None:
    this_update = dt.datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC)
    entries = [
        Entry(1, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), "keyCompromise"),
        Entry(2, this_update),
    ]
    der = crl_of(pki, entries, this_update=this_update, next_update=this_update + dt.timedelta(days=4))
    assert b"\x17\x0d491231235959Z" in der
    assert b"\x18\x0f20500101000000Z" in der  # thisUpdate and the second revocationDate
    assert b"\x18\x0f20500105000000Z" in der
    crl = x509.load_der_x509_crl(der)
    # Counted in the TBSCertList: the signature's random bytes may hold 18 0f too.
    assert crl.tbs_certlist_bytes.count(b"\x18\x0f") == 3
    assert crl.last_update_utc == this_update
    assert [r.revocation_date_utc for r in crl] == [e.revoked_at for e in entries]
    assert der == reference_crl(
        issuer=pki.issuing,
        number=7,
        this_update=this_update,
        next_update=this_update + dt.timedelta(days=4),
        entries=entries,
    )


def test_times_before_1950_use_generalizedtime() -> None:
    assert encode_time(dt.datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC)) == (b"\x18\x0f19491231235959Z")
    assert encode_time(dt.datetime(1950, 1, 1, tzinfo=UTC)) == b"\x17\x0d500101000000Z"


def test_fractions_dropped_and_other_zones_converted(pki: Pki) -> None:
    jst = dt.timezone(dt.timedelta(hours=9))
    entries = [Entry(5, dt.datetime(2026, 6, 1, 20, 59, 59, 999_999, tzinfo=jst))]
    der = crl_of(pki, entries, this_update=EPOCH.replace(microsecond=500_000))
    (revoked,) = x509.load_der_x509_crl(der)
    assert revoked.revocation_date_utc == dt.datetime(2026, 6, 1, 11, 59, 59, tzinfo=UTC)
    assert x509.load_der_x509_crl(der).last_update_utc == EPOCH


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "rule"),
    [
        ("certificateHold", "BR 7.2.2"),
        ("removeFromCRL", "RFC 5280 5.3.1"),
        ("cACompromise", "ARL"),
        ("aACompromise", "BR 7.2.2"),
        ("keycompromise", "not a CRLReason name"),
    ],
)
def test_refused_reasons_on_subscriber_crl(pki: Pki, reason: str, rule: str) -> None:
    entries = [Entry(9, EPOCH, "keyCompromise"), Entry(10, EPOCH, reason)]
    with pytest.raises(ProhibitedReasonError) as caught:
        crl_of(pki, entries)
    assert caught.value.serial == 10
    assert caught.value.reason == reason
    assert rule in caught.value.rule
    assert rule in str(caught.value)


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "aACompromise"])
def test_refused_reasons_on_arl(pki: Pki, reason: str) -> None:
    with pytest.raises(ProhibitedReasonError):
        build_crl(
            issuer=pki.root.cert,
            signer=pki.root.signer,
            number=1,
            this_update=EPOCH,
            next_update=NEXT,
            entries=[Entry(2, EPOCH, reason)],
            arl=True,
        )


def test_duplicate_serial_refused(pki: Pki) -> None:
    entries = [Entry(3, EPOCH), Entry(0xABCDEF, EPOCH, "superseded"), Entry(0xABCDEF, EPOCH)]
    with pytest.raises(DuplicateSerialError) as caught:
        crl_of(pki, entries)
    assert caught.value.serial == 0xABCDEF


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_impossible_serials_refused(pki: Pki, serial: int) -> None:
    with pytest.raises(CrlError, match=re.escape("RFC 5280 4.1.2.2")):
        crl_of(pki, [Entry(serial, EPOCH)])


def test_revocation_after_this_update_refused(pki: Pki) -> None:
    crl_of(pki, [Entry(1, EPOCH)])  # exactly thisUpdate is fine
    with pytest.raises(CrlError, match="after thisUpdate"):
        crl_of(pki, [Entry(1, EPOCH + dt.timedelta(seconds=1))])
    with pytest.raises(CrlError, match="after thisUpdate"):
        crl_of(pki, [Entry(1, EPOCH + dt.timedelta(days=1))])


def test_naive_times_refused(pki: Pki) -> None:
    naive = dt.datetime(2026, 5, 1)
    with pytest.raises(CrlError, match="timezone-aware"):
        crl_of(pki, [Entry(1, naive)])
    with pytest.raises(CrlError, match="timezone-aware"):
        crl_of(pki, [], this_update=naive)


def test_validity_limits(pki: Pki) -> None:
    with pytest.raises(CrlError, match=re.escape("RFC 5280 5.1.2.5")):
        crl_of(pki, [], next_update=EPOCH)
    crl_of(pki, [], next_update=EPOCH + dt.timedelta(days=10))
    with pytest.raises(CrlError, match=re.escape("BR 7.2")):
        crl_of(pki, [], next_update=EPOCH + dt.timedelta(days=10, seconds=1))
    # An ARL may run 365 days (BR 7.2: 12 months; pkilint's reading).
    build_crl(
        issuer=pki.root.cert,
        signer=pki.root.signer,
        number=1,
        this_update=EPOCH,
        next_update=EPOCH + dt.timedelta(days=365),
        entries=[],
        arl=True,
    )
    with pytest.raises(CrlError, match=re.escape("BR 7.2")):
        build_crl(
            issuer=pki.root.cert,
            signer=pki.root.signer,
            number=1,
            this_update=EPOCH,
            next_update=EPOCH + dt.timedelta(days=366),
            entries=[],
            arl=True,
        )


@pytest.mark.parametrize("number", [-1, 2**159, True])
def test_crl_number_range(pki: Pki, number: int) -> None:
    with pytest.raises(CrlError, match=re.escape("BR 7.2.2")):
        crl_of(pki, [], number=number)


def test_issuer_without_ski_refused() -> None:
    ca = make_ca("No SKI", with_ski=False)
    with pytest.raises(CrlError, match="subjectKeyIdentifier"):
        build_crl(issuer=ca.cert, signer=ca.signer, number=1, this_update=EPOCH, next_update=NEXT, entries=[])


def test_issuer_without_crl_sign_refused(pki: Pki) -> None:
    ca = make_ca("No cRLSign", parent=pki.root, crl_sign=False)
    with pytest.raises(CrlError, match="cRLSign"):
        build_crl(issuer=ca.cert, signer=ca.signer, number=1, this_update=EPOCH, next_update=NEXT, entries=[])


def test_signer_with_another_key_refused(pki: Pki) -> None:
    with pytest.raises(CrlError, match="does not hold the issuer"):
        crl_of(pki, [], signer=pki.root.signer)


# --- outside oracles: OpenSSL and pkilint -------------------------------------------------------


@pytest.mark.oracle
def test_openssl_verifies_the_signature(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "x.crl").write_bytes(crl_of(pki, ALL_SUBSCRIBER_REASONS))
    (tmp_path / "issuer.pem").write_bytes(cert_pem(pki.issuing.cert))
    result = openssl("crl", "-inform", "DER", "-in", tmp_path / "x.crl", "-CAfile", tmp_path / "issuer.pem", "-noout")
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


@pytest.mark.oracle
def test_openssl_rejects_a_tampered_crl(pki: Pki, tmp_path: Path) -> None:
    der = bytearray(crl_of(pki, ALL_SUBSCRIBER_REASONS))
    der[der.index(b"\x02\x01\x10") + 2] = 0x20  # change serial 0x10 to 0x20
    (tmp_path / "x.crl").write_bytes(bytes(der))
    (tmp_path / "issuer.pem").write_bytes(cert_pem(pki.issuing.cert))
    result = openssl("crl", "-inform", "DER", "-in", tmp_path / "x.crl", "-CAfile", tmp_path / "issuer.pem", "-noout")
    assert "verify OK" not in result.stdout + result.stderr


@pytest.mark.oracle
def test_openssl_verify_sees_revoked_and_good_leaves(pki: Pki, tmp_path: Path) -> None:
    revoked_leaf = pki.leaf(0x5EED01)
    good_leaf = pki.leaf(0x5EED02, "good.example.jp")
    crl = crl_of(pki, [*ALL_SUBSCRIBER_REASONS, Entry(0x5EED01, EPOCH - dt.timedelta(hours=1), "keyCompromise")])
    # The root's ARL lets -crl_check_all check the whole chain.
    arl = build_crl(
        issuer=pki.root.cert,
        signer=pki.root.signer,
        number=3,
        this_update=EPOCH,
        next_update=EPOCH + dt.timedelta(days=365),
        entries=[Entry(0x99, EPOCH, "cACompromise")],
        arl=True,
    )
    (tmp_path / "crl.pem").write_bytes(pem(crl, "X509 CRL"))
    (tmp_path / "arl.pem").write_bytes(pem(arl, "X509 CRL"))
    (tmp_path / "chain.pem").write_bytes(cert_pem(pki.root.cert, pki.issuing.cert))
    (tmp_path / "revoked.pem").write_bytes(cert_pem(revoked_leaf))
    (tmp_path / "good.pem").write_bytes(cert_pem(good_leaf))
    at = str(int((EPOCH + dt.timedelta(hours=1)).timestamp()))

    result = openssl(
        "verify",
        "-attime",
        at,
        "-crl_check",
        "-CRLfile",
        tmp_path / "crl.pem",
        "-CAfile",
        tmp_path / "chain.pem",
        tmp_path / "revoked.pem",
    )
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
    assert "error 23" in result.stdout + result.stderr

    result = openssl(
        "verify",
        "-attime",
        at,
        "-crl_check_all",
        "-CRLfile",
        tmp_path / "crl.pem",
        "-CRLfile",
        tmp_path / "arl.pem",
        "-CAfile",
        tmp_path / "chain.pem",
        tmp_path / "good.pem",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")

    # After nextUpdate the same CRL no longer vouches for anything.
    late = str(int((NEXT + dt.timedelta(seconds=1)).timestamp()))
    result = openssl(
        "verify",
        "-attime",
        late,
        "-crl_check",
        "-CRLfile",
        tmp_path / "crl.pem",
        "-CAfile",
        tmp_path / "chain.pem",
        tmp_path / "good.pem",
    )
    assert "CRL has expired" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "arl", "entries", "this_update", "next_update"),
    [
        ("subscriber CRL, every allowed reason", False, ALL_SUBSCRIBER_REASONS, EPOCH, NEXT),
        ("empty subscriber CRL", False, [], EPOCH, NEXT),
        (
            "CRL across 2050",
            False,
            [Entry(1, dt.datetime(2049, 12, 31, 23, 0, tzinfo=UTC), "superseded")],
            dt.datetime(2049, 12, 31, 23, 30, tzinfo=UTC),
            dt.datetime(2050, 1, 4, tzinfo=UTC),
        ),
        (
            "ARL with cACompromise",
            True,
            [Entry(0x99, EPOCH, "cACompromise"), Entry(0x9A, EPOCH, "superseded")],
            EPOCH,
            EPOCH + dt.timedelta(days=365),
        ),
    ],
)
@pytest.mark.oracle
def test_pkilint_br_profile_is_clean(
    pki: Pki,
    tmp_path: Path,
    name: str,
    arl: bool,
    entries: list[Entry],
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> None:
    ca = pki.root if arl else pki.issuing
    der = build_crl(
        issuer=ca.cert,
        signer=ca.signer,
        number=11,
        this_update=this_update,
        next_update=next_update,
        entries=entries,
        arl=arl,
    )
    (tmp_path / "crl.der").write_bytes(der)
    result = lint_crl(tmp_path / "crl.der", arl=arl)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.oracle
def test_pkilint_catches_what_the_builder_refuses(pki: Pki, tmp_path: Path) -> None:
    """The lint runs above can fail: pyca builds a certificateHold entry, pkilint flags it."""
    with pytest.raises(ProhibitedReasonError):
        crl_of(pki, [Entry(1, EPOCH, "certificateHold")])
    der = reference_crl(
        issuer=pki.issuing, number=1, this_update=EPOCH, next_update=NEXT, entries=[Entry(1, EPOCH, "certificateHold")]
    )
    (tmp_path / "hold.der").write_bytes(der)
    result = lint_crl(tmp_path / "hold.der")
    assert result.returncode != 0
    assert "cabf.crl_prohibited_reason_code" in result.stdout


# --- property: random entry sets round-trip through pyca ------------------------------------------

_times = st.datetimes(
    min_value=dt.datetime(1950, 1, 1),
    max_value=EPOCH.replace(tzinfo=None),
    timezones=st.just(UTC),
)
_entries = st.lists(
    st.builds(
        Entry,
        serial=st.integers(min_value=1, max_value=2**159 - 1),
        revoked_at=_times,
        reason=st.sampled_from(sorted(SUBSCRIBER_REASONS)),
    ),
    max_size=40,
    unique_by=lambda e: e.serial,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=_entries, number=st.integers(min_value=0, max_value=2**159 - 1))
def test_random_entry_sets_round_trip(entries: list[Entry], number: int) -> None:
    pki = shared_pki()
    der = crl_of(pki, entries, number=number)
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(rsa_public(pki.issuing.cert))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    got = []
    for revoked in crl:
        reasons = [e.value.reason.value for e in revoked.extensions]
        got.append((revoked.serial_number, revoked.revocation_date_utc, reasons[0] if reasons else "unspecified"))
    assert got == [(e.serial, e.revoked_at.replace(microsecond=0), e.reason) for e in entries]
    assert der == reference_crl(issuer=pki.issuing, number=number, this_update=EPOCH, next_update=NEXT, entries=entries)
