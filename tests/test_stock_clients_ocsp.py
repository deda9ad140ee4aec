"""Stock OCSP clients ask a running `shirushi serve` themselves and judge its answers.

Each client finds the responder in the certificate's AIA extension (or is given that URL),
sends its own request, verifies the response its own way and gives a verdict; each test asserts
that verdict for a good certificate, then for the same certificate after `shirushi revoke`. The
responder's access log shows how each one asked (method, CertID hash). Clients: NSS (`vfychain`),
the JDK's PKIXRevocationChecker, Go's golang.org/x/crypto/ocsp, pyhanko-certvalidator.
docs/interop.md has the results.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.serving import Site
from support.stock_clients import asked, revoke, serving_site
from test_stapling import Leaf

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

CLIENTS = Path(__file__).parent / "clients"
VFYCHAIN, CERTUTIL = shutil.which("vfychain"), shutil.which("certutil")
JAVA = shutil.which("java")
GO = shutil.which("go")
GOPATH = Path("/usr/share/gocode")  # Debian's golang-*-dev packages install their sources here


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving_site(tmp_path_factory.mktemp("stock-ocsp")) as s:
        yield s


class Cert:
    """A new certificate from `shirushi issue` and its files, plus the issuing CA alone."""

    def __init__(self, site: Site, directory: Path) -> None:
        self.site = site
        self.leaf = Leaf(site, directory)
        self.issuer_path = directory / "issuing.pem"
        self.issuer_path.write_bytes(self.leaf.issuer.public_bytes(serialization.Encoding.PEM))

    def revoke(self, reason: str) -> None:
        revoke(self.site, self.leaf.serial, reason)

    def asked(self, count: int) -> list[tuple[str, str]]:
        return asked(self.site, self.leaf.serial, count)


@pytest.fixture
def cert(site: Site, tmp_path: Path) -> Cert:
    return Cert(site, tmp_path / "cert")


# -- NSS ------------------------------------------------------------------------------------


@pytest.fixture
def nssdb(tmp_path: Path, cert: Cert) -> str:
    """A new NSS database in which the root is the one trusted CA (`C,,`: for TLS servers)."""
    assert CERTUTIL is not None
    db = tmp_path / "nssdb"
    db.mkdir()
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-n", "Shirushi root", "-t", "C,,", "-a", "-i", str(cert.leaf.root_path)],
    ):
        result = subprocess.run([CERTUTIL, "-d", f"sql:{db}", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    return f"sql:{db}"


def vfychain(db: str, cert: Cert) -> tuple[int, str]:
    """`vfychain` with libpkix (`-pp`) for a TLS server (`-u 1`), the leaf checked by OCSP only,
    and missing OCSP information an error (`failIfNoInfo`), so "good" means NSS got an answer."""
    assert VFYCHAIN is not None
    args = ["-d", db, "-v", "-pp", "-u", "1", "-g", "leaf", "-m", "ocsp", "-s", "failIfNoInfo"]
    args += ["-a", str(cert.leaf.cert_path), "-a", str(cert.issuer_path)]
    result = subprocess.run([VFYCHAIN, *args], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.skipif(VFYCHAIN is None or CERTUTIL is None, reason="NSS tools are missing (Debian libnss3-tools)")
def test_nss_vfychain_checks_ocsp(cert: Cert, nssdb: str) -> None:
    """NSS (libpkix) asks the responder in the leaf's AIA URL, verifies the delegated signer's
    response and accepts the chain; after a revocation it reports the certificate revoked."""
    code, out = vfychain(nssdb, cert)
    assert code == 0, out
    assert "Chain is good!" in out, out
    assert cert.asked(1)[0] == ("GET", "sha1"), cert.asked(1)

    cert.revoke("keyCompromise")
    code, out = vfychain(nssdb, cert)
    assert code == 1, out
    assert "Chain is bad!" in out, out
    assert "ERROR -8180: Peer's Certificate has been revoked." in out, out
    # libpkix reports -8180 for an `unauthorized` answer too: the responder must have answered
    # this request `successful` (the presigned revoked response) for the verdict to count.
    assert len(cert.asked(2)) >= 2


# -- Java -----------------------------------------------------------------------------------


def java(cert: Cert, *properties: str) -> tuple[int, str]:
    """tests/clients/OcspCheck.java (run from source): PKIX validation with PKIXRevocationChecker,
    OCSP only, end entity only, no CRL fallback."""
    assert JAVA is not None
    command = [JAVA, *properties, str(CLIENTS / "OcspCheck.java"), str(cert.leaf.root_path), str(cert.leaf.chain_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.skipif(JAVA is None, reason="java is not installed (Debian package openjdk-17-jdk-headless)")
def test_java_pkix_revocation_checker(cert: Cert) -> None:
    """The JDK's OCSP client (GET for small requests) accepts our response, with and without
    a nonce in its request (`jdk.security.certpath.ocspNonce`): a response without a nonce is
    acceptable to it (RFC 8954). After a revocation it names the reason."""
    assert java(cert) == (0, "good\n")
    assert java(cert, "-Djdk.security.certpath.ocspNonce=true") == (0, "good\n")
    assert [hash for _, hash in cert.asked(2)] == ["sha1", "sha1"]

    cert.revoke("keyCompromise")
    assert java(cert) == (1, "revoked KEY_COMPROMISE\n")
    assert java(cert, "-Djdk.security.certpath.ocspNonce=true") == (1, "revoked KEY_COMPROMISE\n")


# -- Go -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ocspcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/clients/ocspcheck.go built offline against Debian's golang.org/x/crypto (GOPATH mode,
    no module proxy)."""
    assert GO is not None
    out = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
    }
    binary = out / "ocspcheck"
    command = [GO, "build", "-o", str(binary), str(CLIENTS / "ocspcheck.go")]
    result = subprocess.run(command, env=env, cwd=out, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return binary


@pytest.mark.skipif(
    GO is None or not (GOPATH / "src/golang.org/x/crypto/ocsp").is_dir(),
    reason="Go or golang.org/x/crypto is missing (Debian golang-go, golang-golang-x-crypto-dev)",
)
def test_go_x_crypto_ocsp(cert: Cert, site: Site, ocspcheck: Path) -> None:
    """golang.org/x/crypto/ocsp builds SHA-1 and SHA-256 requests, POSTs and GETs them; each
    answer parses and verifies (ParseResponseForCert: signature by the delegated signer issued by
    the CA, with OCSPSigning; serial), echoes the CertID hash and has a future nextUpdate."""
    command = [str(ocspcheck), str(cert.leaf.cert_path), str(cert.issuer_path), site.ocsp_url]

    def run() -> tuple[int, str]:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    queries = ["sha1 POST", "sha1 GET", "sha256 POST", "sha256 GET"]
    assert run() == (0, "".join(f"{q} good\n" for q in queries))
    assert sorted(cert.asked(4)) == sorted((q.split()[1], q.split()[0]) for q in queries)

    cert.revoke("superseded")
    assert run() == (0, "".join(f"{q} revoked superseded\n" for q in queries))


# -- pyhanko-certvalidator ------------------------------------------------------------------

try:
    import aiohttp
    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import RevokedError
    from pyhanko_certvalidator.fetchers.aiohttp_fetchers import (  # type: ignore[attr-defined]
        AIOHttpCertificateFetcher,
        AIOHttpCRLFetcher,
        AIOHttpOCSPFetcher,
    )
    from pyhanko_certvalidator.fetchers.api import Fetchers
    from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

    PYHANKO = True
except ImportError:
    PYHANKO = False


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


async def pyhanko_verdict(cert: Cert, hash_algorithm: str) -> tuple[str, list[bool]]:
    """pyhanko-certvalidator's verdict on the leaf ("good" or the RevokedError's message), and
    for each OCSP response it fetched, whether it carried a nonce. Its OCSP fetcher POSTs with a
    nonce by default; the leaf must be checked by OCSP, the issuing CA by the root's CRL."""
    root = x509.load_pem_x509_certificate(cert.leaf.root_path.read_bytes())
    leaf, issuing, trusted = (asn1(c) for c in (cert.leaf.cert, cert.leaf.issuer, root))
    policy = RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.OCSP_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.CRL_REQUIRED,
    )
    async with aiohttp.ClientSession() as session:
        ocsp_fetcher = AIOHttpOCSPFetcher(session, certid_hash_algo=hash_algorithm)
        assert ocsp_fetcher.request_nonces
        fetchers = Fetchers(
            ocsp_fetcher=ocsp_fetcher,
            crl_fetcher=AIOHttpCRLFetcher(session),
            cert_fetcher=AIOHttpCertificateFetcher(session),
        )
        context = ValidationContext(
            trust_roots=[trusted],
            allow_fetching=True,
            fetchers=fetchers,
            revinfo_policy=CertRevTrustPolicy(policy),
        )
        validator = CertificateValidator(leaf, intermediate_certs=[issuing], validation_context=context)
        try:
            await validator.async_validate_usage({"digital_signature"}, {"server_auth"})  # type: ignore[no-untyped-call]
            verdict = "good"
        except RevokedError as exc:
            verdict = str(exc)
        nonces = [response.nonce_value is not None for response in ocsp_fetcher.fetched_responses()]
    return verdict, nonces


@pytest.mark.skipif(not PYHANKO, reason="pyhanko-certvalidator is not installed (the dev extra)")
@pytest.mark.parametrize("hash_algorithm", ["sha1", "sha256"])
def test_pyhanko_certvalidator(cert: Cert, hash_algorithm: str) -> None:
    """pyhanko-certvalidator POSTs a request with a nonce; our presigned response has none, and it
    accepts that (RFC 8954 leaves nonces optional). Good, then revoked with the reason."""
    verdict, nonces = asyncio.run(pyhanko_verdict(cert, hash_algorithm))
    assert verdict == "good"
    assert nonces == [False]
    assert cert.asked(1) == [("POST", hash_algorithm)]

    cert.revoke("keyCompromise")
    verdict, _ = asyncio.run(pyhanko_verdict(cert, hash_algorithm))
    assert verdict.startswith("OCSP response indicates the end-entity certificate was revoked at "), verdict
    assert verdict.endswith(", due to a compromised key."), verdict
