"""Token-signed certificates, OCSP responses and CRLs checked by stock `openssl`.

Keys for a root, an issuing CA and a delegated OCSP signer are generated on the SoftHSM2
token; pyca's builders sign through `SignerKey`, `asn1.ocsp.build_response` through the
Signer itself. openssl is the outside oracle, and each check is also shown to fail when
given the wrong trust anchor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi.asn1.ocsp import IssuerHashes, Status, build_response
from shirushi.signing import PublicKey, SignerKey
from shirushi.signing.pkcs11 import PKCS11KeyStore, PKCS11Signer
from support.softhsm import SoftHSM

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # fixed, so nothing depends on the wall clock
ATTIME = str(int((NOW + dt.timedelta(hours=1)).timestamp()))


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shirushi Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def issue(
    subject: x509.Name,
    public: PublicKey,
    issuer: x509.Certificate | None,
    signer: PKCS11Signer,
    *,
    ca: bool,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    issuer_name = issuer.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(SignerKey(signer), hashes.SHA256())


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)


@dataclasses.dataclass
class PKI:
    root: x509.Certificate
    ca: x509.Certificate
    ca_signer: PKCS11Signer
    ocsp: x509.Certificate
    ocsp_signer: PKCS11Signer
    leaf: x509.Certificate


@pytest.fixture(scope="module")
def pki(softhsm: SoftHSM) -> PKI:
    store = PKCS11KeyStore(softhsm.settings())
    tag = uuid.uuid4().hex[:8]
    root_signer = store.generate(f"root-{tag}")
    ca_signer = store.generate(f"issuing-ca-{tag}")
    ocsp_signer = store.generate(f"ocsp-signer-{tag}")
    root = issue(name("Test Root"), root_signer.public_key(), None, root_signer, ca=True)
    ca = issue(name("Test Issuing CA"), ca_signer.public_key(), root, root_signer, ca=True)
    ocsp = issue(
        name("Test OCSP Responder"),
        ocsp_signer.public_key(),
        ca,
        ca_signer,
        ca=False,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
    )
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = issue(
        name("www.example.test"), leaf_key.public_key(), ca, ca_signer, ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    return PKI(root, ca, ca_signer, ocsp, ocsp_signer, leaf)


def test_certificate_ids_match_the_token_key_ids(pki: PKI) -> None:
    for cert, signer in ((pki.ca, pki.ca_signer), (pki.ocsp, pki.ocsp_signer)):
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski.digest == signer.key_id


def test_certificate_chain_verifies_with_openssl(pki: PKI, tmp_path: Path) -> None:
    root = write_pem(tmp_path / "root.pem", pki.root)
    ca = write_pem(tmp_path / "ca.pem", pki.ca)
    leaf = write_pem(tmp_path / "leaf.pem", pki.leaf)
    out = openssl("verify", "-attime", ATTIME, "-CAfile", root, "-untrusted", ca, leaf)
    assert out.returncode == 0 and out.stdout.strip() == f"{leaf}: OK", out.stderr
    # The oracle can fail: the issuing CA alone is not a trust anchor for this chain.
    out = openssl("verify", "-attime", ATTIME, "-CAfile", ca, leaf)
    assert out.returncode != 0


@pytest.mark.parametrize("revoked", [False, True], ids=["good", "revoked"])
def test_ocsp_response_verifies_with_openssl(pki: PKI, tmp_path: Path, revoked: bool) -> None:
    status = Status(NOW - dt.timedelta(hours=2), "keyCompromise") if revoked else Status()
    der = build_response(
        issuer=IssuerHashes.of(pki.ca, "sha1"),
        serial=pki.leaf.serial_number,
        status=status,
        this_update=NOW,
        next_update=NOW + dt.timedelta(days=4),
        produced_at=NOW,
        signer_cert=pki.ocsp,
        signer=pki.ocsp_signer,
    )
    response = tmp_path / "response.der"
    response.write_bytes(der)
    ca = write_pem(tmp_path / "ca.pem", pki.ca)
    leaf = write_pem(tmp_path / "leaf.pem", pki.leaf)
    ocsp = write_pem(tmp_path / "ocsp.pem", pki.ocsp)
    # -attime is not applied by `openssl ocsp` to the response times, hence -validity_period.
    common = (
        "ocsp",
        "-respin",
        response,
        "-issuer",
        ca,
        "-cert",
        leaf,
        "-no_nonce",
        "-validity_period",
        str(10 * 365 * 86400),
    )
    out = openssl(*common, "-VAfile", ocsp)
    assert out.returncode == 0, out.stderr
    assert "Response verify OK" in out.stderr
    expected = "revoked" if revoked else "good"
    assert f"{leaf}: {expected}" in out.stdout
    # The oracle can fail: the root's key did not sign this response.
    root = write_pem(tmp_path / "root.pem", pki.root)
    out = openssl(*common, "-VAfile", root)
    assert "Response verify OK" not in out.stderr


def test_crl_verifies_with_openssl(pki: PKI, tmp_path: Path) -> None:
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(pki.leaf.serial_number)
        .revocation_date(NOW - dt.timedelta(hours=3))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=4))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_signer.public_key()),
            critical=False,
        )
        .sign(SignerKey(pki.ca_signer), hashes.SHA256())
    )
    path = tmp_path / "crl.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    chain = write_pem(tmp_path / "chain.pem", pki.ca, pki.root)
    out = openssl("crl", "-in", path, "-CAfile", chain, "-noout")
    assert out.returncode == 0 and "verify OK" in out.stderr, out.stderr
    assert crl.is_signature_valid(pki.ca_signer.public_key())
    # The oracle can fail: with only the root as issuer candidate the signature is not found.
    root = write_pem(tmp_path / "root.pem", pki.root)
    out = openssl("crl", "-in", path, "-CAfile", root, "-noout")
    assert "verify OK" not in out.stderr
