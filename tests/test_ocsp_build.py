"""`asn1.ocsp.build_response` writes the DER itself: held byte for byte to pyca's OCSPResponseBuilder.

RSA PKCS#1 v1.5 signatures are deterministic, so for an RSA signer the two encoders must agree on
every byte (good, revoked with and without a reason, both CertID hashes, serials of every length,
dates either side of 2050); for a P-256 signer everything but the signature must agree, and the
signature must verify. pyca's parser reads each result back.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from shirushi.asn1.ocsp import IssuerHashes, Status, build_response
from shirushi.reasons import FLAGS
from shirushi.signing import Signer, signer_key
from shirushi.signing.software import SoftwareSigner

UTC = dt.UTC
T0 = dt.datetime(2026, 12, 3, 10, 11, 12, tzinfo=UTC)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject: str, public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, signer: Signer) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name("Build Test CA"))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - dt.timedelta(days=1))
        .not_valid_after(T0 + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    )
    return builder.sign(signer_key(signer), hashes.SHA256())


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, SoftwareSigner]:
    signer = SoftwareSigner(rsa.generate_private_key(65537, 2048), "ca")
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return certificate("Build Test CA", public, signer), signer


def pyca_response(issuer: IssuerHashes, serial: int, status: Status, produced_at: dt.datetime, **kw: object) -> bytes:
    """The same response through pyca's builder (its producedAt is its own clock: patched below)."""
    reason = FLAGS[status.reason] if status.reason and status.reason != "unspecified" else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=issuer.name_hash,
        issuer_key_hash=issuer.key_hash,
        serial_number=serial,
        algorithm=hashes.SHA1() if issuer.alg == "sha1" else hashes.SHA256(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if status.is_revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=kw["this_update"],  # type: ignore[arg-type]
        next_update=kw["next_update"],  # type: ignore[arg-type]
        revocation_time=status.revoked_at,
        revocation_reason=reason,
    )
    signer_cert = kw["signer_cert"]
    assert isinstance(signer_cert, x509.Certificate)
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert).certificates([signer_cert])
    signer = kw["signer"]
    assert isinstance(signer, SoftwareSigner)
    return builder.sign(signer_key(signer), hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def produced_at_of(der: bytes) -> dt.datetime:
    return ocsp.load_der_ocsp_response(der).produced_at_utc


STATUSES = [
    Status(),
    Status(T0 - dt.timedelta(days=2), None),
    Status(T0 - dt.timedelta(days=2), "unspecified"),
    Status(T0 - dt.timedelta(hours=5), "keyCompromise"),
    Status(T0 - dt.timedelta(hours=5), "cessationOfOperation"),
    Status(T0 - dt.timedelta(hours=5), "privilegeWithdrawn"),
]
SERIALS = [1, 0x7F, 0x80, 0xFFFF, 0x7F << 152, (1 << 159) + 12345, x509.random_serial_number()]


@pytest.mark.parametrize("alg", ["sha1", "sha256"])
@pytest.mark.parametrize("status", STATUSES, ids=lambda s: s.reason or ("revoked" if s.is_revoked else "good"))
def test_rsa_signer_output_is_pyca_builder_output_byte_for_byte(
    ca: tuple[x509.Certificate, SoftwareSigner], alg: str, status: Status
) -> None:
    ca_cert, ca_signer = ca
    signer = SoftwareSigner(rsa.generate_private_key(65537, 2048), "ocsp")
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    signer_cert = certificate("Build Test OCSP", public, ca_signer)
    issuer = IssuerHashes.of(ca_cert, alg)
    for serial in SERIALS:
        for this_update in (T0, dt.datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)):
            kw: dict[str, object] = dict(
                this_update=this_update,
                next_update=this_update + dt.timedelta(days=4),
                signer_cert=signer_cert,
                signer=signer,
            )
            theirs = pyca_response(issuer, serial, status, T0, **kw)
            # pyca stamps producedAt with its own clock; use the same instant.
            ours = build_response(
                issuer=issuer,
                serial=serial,
                status=status,
                produced_at=produced_at_of(theirs),
                **kw,  # type: ignore[arg-type]
            )
            assert ours == theirs


def test_p256_signer_output_matches_but_for_the_signature(ca: tuple[x509.Certificate, SoftwareSigner]) -> None:
    ca_cert, ca_signer = ca
    signer = SoftwareSigner(ec.generate_private_key(ec.SECP256R1()), "ocsp-p256")
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signer_cert = certificate("Build Test OCSP P-256", public, ca_signer)
    issuer = IssuerHashes.of(ca_cert, "sha256")
    status = Status(T0 - dt.timedelta(hours=1), "keyCompromise")
    kw: dict[str, object] = dict(
        this_update=T0, next_update=T0 + dt.timedelta(days=4), signer_cert=signer_cert, signer=signer
    )
    theirs = pyca_response(issuer, 0xABCDEF, status, T0, **kw)
    ours = build_response(
        issuer=issuer,
        serial=0xABCDEF,
        status=status,
        produced_at=produced_at_of(theirs),
        **kw,  # type: ignore[arg-type]
    )
    parsed, reference = ocsp.load_der_ocsp_response(ours), ocsp.load_der_ocsp_response(theirs)
    assert parsed.tbs_response_bytes == reference.tbs_response_bytes
    assert parsed.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    public.verify(parsed.signature, parsed.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert parsed.certificates == [signer_cert]
    assert parsed.revocation_reason == x509.ReasonFlags.key_compromise
    # Outside the signature BIT STRING the two are the same bytes.
    assert len(ours) - len(theirs) == len(parsed.signature) - len(reference.signature)


def test_produced_at_is_the_argument(ca: tuple[x509.Certificate, SoftwareSigner]) -> None:
    ca_cert, ca_signer = ca
    public = ca_signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    der = build_response(
        issuer=IssuerHashes.of(ca_cert, "sha1"),
        serial=5,
        status=Status(),
        this_update=T0,
        next_update=T0 + dt.timedelta(days=4),
        produced_at=T0 + dt.timedelta(seconds=7, microseconds=900_000),
        signer_cert=certificate("Self", public, ca_signer),
        signer=ca_signer,
    )
    assert produced_at_of(der) == T0 + dt.timedelta(seconds=7)
