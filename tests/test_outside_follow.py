"""`openssl ca` as an outside CA under a running `serve`: the CA is added without a restart (the
responders reread their issuers from Redis), its delegated signer is certified by `openssl ca`
from Shirushi's CSR, and a revocation made with `openssl ca -revoke` after the first import reaches
OCSP through serve's follow mode. Stock `openssl ocsp` checks every answer with only the outside
CA's certificate as -CAfile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from support.outside_ca import OpenSSLCA, ocsp_query, reason_of, status_of
from support.serving import Site

pytestmark = [pytest.mark.oracle, pytest.mark.e2e]


def wait_status(ca: Path, url: str, serial: int, want: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        answer = ocsp_query(ca, url, serial=serial)
        got = status_of(answer) if "Response verify OK" in answer or "Responder Error" in answer else answer
        if got == want or time.monotonic() > deadline:
            assert got == want, answer
            return answer
        time.sleep(0.3)


def test_openssl_ca_followed_by_serve(tmp_path: Path) -> None:
    site = Site(tmp_path / "site")
    ca = OpenSSLCA(tmp_path / "ossl", ocsp_url=site.ocsp_url)
    site.env.update(SHIRUSHI_OUTSIDE__FOLLOW_INDEX=f"ossl={ca.index}", SHIRUSHI_OUTSIDE__POLL_INTERVAL="1s")
    assert site.cli("init").returncode == 0
    leaves = {name: ca.issue(name) for name in ("a.example", "b.example", "c.example", "d.example")}
    serial = {n: x509.load_pem_x509_certificate(p.read_bytes()).serial_number for n, p in leaves.items()}
    ca.revoke(leaves["b.example"], "keyCompromise", "-crl_compromise", "20260101000000Z")
    ca.revoke(leaves["c.example"], "superseded")
    with site.serving():
        # Added while serve runs: the responders learn of it from Redis, without a restart.
        added = site.cli("issuer", "add", "ossl", "--cert", str(ca.ca))
        assert added.returncode == 0, added.stderr
        csr = tmp_path / "ocsp.csr"
        assert site.cli("issuer", "signer-csr", "ossl", "--out", str(csr)).returncode == 0
        signer = ca.sign(csr, tmp_path / "ocsp.crt", "ocsp")
        installed = site.cli("issuer", "signer-cert", "ossl", "--cert", str(signer))
        assert installed.returncode == 0, installed.stderr
        # No import yet (serve's follow mode may already have run): nothing is ever "good" unseen.
        assert status_of(ocsp_query(ca.ca, site.ocsp_url, serial=0xABCDEF)) in ("unauthorized", "tryLater")
        imported = site.cli("import", "ossl", "--openssl-index", str(ca.index))
        assert imported.returncode == 0, imported.stderr
        wait_status(ca.ca, site.ocsp_url, serial["a.example"], "good", timeout=30)
        answer = wait_status(ca.ca, site.ocsp_url, serial["b.example"], "revoked")
        assert reason_of(answer) == "keyCompromise"
        answer = wait_status(ca.ca, site.ocsp_url, serial["c.example"], "revoked")
        assert reason_of(answer) == "superseded"
        assert status_of(ocsp_query(ca.ca, site.ocsp_url, cert=leaves["d.example"])) == "good"
        assert status_of(ocsp_query(ca.ca, site.ocsp_url, serial=0xABCDEF)) == "unauthorized"

        # After the first import: `openssl ca -revoke`, and serve's follow mode does the rest.
        ca.revoke(leaves["d.example"], "cessationOfOperation")
        started = time.monotonic()
        answer = wait_status(ca.ca, site.ocsp_url, serial["d.example"], "revoked", timeout=20)
        assert reason_of(answer) == "cessationOfOperation"
        assert time.monotonic() - started < 20
        # A certificate issued later is picked up the same way.
        later = ca.issue("e.example")
        wait_status(ca.ca, site.ocsp_url, x509.load_pem_x509_certificate(later.read_bytes()).serial_number, "good")
        refused = site.cli("revoke", format(serial["a.example"], "X"))
        assert refused.returncode != 0 and "outside CA ossl" in refused.stderr
