"""`ocsp.signer_key = "ecdsa-p256"`: a delegated OCSP signer with a P-256 key under the RSA issuing CA.

Against a running `serve` (embedded Redis, SQLite, file keys), judged by the stock clients: `openssl
ocsp` with only the root as trust anchor, GnuTLS `ocsptool`, pkilint's `lint_ocsp_response`; nginx
stapling is in test_stapling.py. Also the switch of an existing CA from one signer type to the other.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import SignatureAlgorithmOID

from support.serving import Site
from test_serve import Leaf, ocsptool_good, openssl_ocsp, post, tool

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("ecdsa-signer"), SHIRUSHI_OCSP__SIGNER_KEY="ecdsa-p256")
    result = s.cli("init")
    assert result.returncode == 0, result.stderr
    assert "created OCSP signer key (ecdsa-p256," in result.stdout
    with s.serving():
        yield s


def basic(body: bytes) -> ocsp.OCSPResponse:
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return response


def test_signer_certificate_is_p256_certified_by_the_rsa_issuing_ca(site: Site) -> None:
    signer = x509.load_pem_x509_certificate((site.data / "certs" / "ocsp-signer.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate((site.data / "certs" / "issuing-ca.pem").read_bytes())
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    assert isinstance(issuing.public_key(), rsa.RSAPublicKey)
    assert signer.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    signer.verify_directly_issued_by(issuing)
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]


def test_openssl_verifies_good_and_revoked_with_only_the_root(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path / "a")
    for extra in ((), ("-sha256",)):
        out = openssl_ocsp(site, leaf, *extra)
        assert "Response verify OK" in out, out
        assert f"{leaf.cert_path}: good" in out
    revoked = Leaf(site, tmp_path / "b")
    result = site.cli("revoke", revoked.serial, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    out = openssl_ocsp(site, revoked)
    assert "Response verify OK" in out and f"{revoked.cert_path}: revoked" in out, out
    assert "Reason: keyCompromise" in out


def test_response_is_ecdsa_with_sha256_and_smaller(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    for alg in (hashes.SHA1(), hashes.SHA256()):
        status, headers, body = post(site, leaf.request(alg))
        assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
        response = basic(body)
        assert response.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        signer = response.certificates[0]
        public = signer.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        # An RSA-2048 signer's response is about 1,410 bytes (bench/RESULTS.md); the P-256 signature
        # is ~72 bytes instead of 256 and the signer certificate carries a 65-byte point, not a modulus.
        assert len(body) < 1150, len(body)


def test_gnutls_ocsptool_verifies(site: Site, tmp_path: Path) -> None:
    ocsptool_good(site, Leaf(site, tmp_path), tmp_path)


def test_pkilint_finds_nothing_in_good_and_revoked_responses(site: Site, tmp_path: Path) -> None:
    good = Leaf(site, tmp_path / "good")
    revoked = Leaf(site, tmp_path / "revoked")
    assert site.cli("revoke", revoked.serial, "--reason", "superseded").returncode == 0
    for leaf in (good, revoked):
        for alg in (hashes.SHA1(), hashes.SHA256()):
            _, _, body = post(site, leaf.request(alg))
            assert basic(body).signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
            path = tmp_path / "r.der"
            path.write_bytes(body)
            lint = subprocess.run(
                [tool("lint_ocsp_response"), "lint", "-s", "WARNING", str(path)], capture_output=True, text=True
            )
            assert lint.returncode == 0, lint.stdout


def test_switching_an_existing_ca_to_ecdsa_and_back(tmp_path: Path) -> None:
    """`init` after a change of `ocsp.signer_key` makes (or reuses) the key of that type and
    certifies it; `serve` then signs with it. The RSA key is kept, so switching back is a re-certification."""
    site = Site(tmp_path / "rsa")
    assert site.cli("init").returncode == 0
    path = site.data / "certs" / "ocsp-signer.pem"
    assert isinstance(x509.load_pem_x509_certificate(path.read_bytes()).public_key(), rsa.RSAPublicKey)
    site.env["SHIRUSHI_OCSP__SIGNER_KEY"] = "ecdsa-p256"
    # serve refuses clearly until init has made the key (no half-configured start).
    result = site.cli("serve")
    assert result.returncode != 0
    assert "ocsp-signer-ecdsa-p256" in result.stderr and "shirushi init" in result.stderr
    assert "Traceback" not in result.stderr
    result = site.cli("init")
    assert result.returncode == 0, result.stderr
    assert "created OCSP signer certificate" in result.stdout
    assert isinstance(x509.load_pem_x509_certificate(path.read_bytes()).public_key(), ec.EllipticCurvePublicKey)
    with site.serving():
        leaf = Leaf(site, tmp_path / "leaf")
        _, _, body = post(site, leaf.request())
        assert basic(body).signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    site.env["SHIRUSHI_OCSP__SIGNER_KEY"] = "rsa-2048"
    result = site.cli("init")
    assert result.returncode == 0 and "created OCSP signer key" not in result.stdout, result.stdout
    assert isinstance(x509.load_pem_x509_certificate(path.read_bytes()).public_key(), rsa.RSAPublicKey)
