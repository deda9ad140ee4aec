"""Outside CAs under a running `serve`, followed by it. Stock `openssl ocsp` checks every answer
with only the outside CA's certificate as -CAfile.

- `openssl ca`: the CA is added without a restart (the responders reread their issuers from
  Redis), its delegated signer is certified by `openssl ca` from Shirushi's CSR, and a revocation
  made with `openssl ca -revoke` after the first import reaches OCSP through the index file.
- easy-rsa: its CRL served over HTTP (Python's http.server, started here) is followed as a URL;
  `easyrsa revoke` + `gen-crl` reaches OCSP within seconds. Its delegated signer ends in ten
  days: `serve` warns in its log, writes a fresh CSR, and /metrics shows the time left."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from support.outside_ca import EasyRSA, OpenSSLCA, ocsp_query, reason_of, status_of
from support.serving import Site, free_port, wait_port

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


def test_easyrsa_crl_url_followed_by_serve_and_signer_expiry(tmp_path: Path) -> None:
    site = Site(tmp_path / "site")
    easy = EasyRSA(tmp_path / "easyrsa", ocsp_url=site.ocsp_url)
    certs = {}
    for name in ("s1", "s2", "s3"):
        easy("build-server-full", name, "nopass")
        certs[name] = tmp_path / f"{name}.crt"  # `easyrsa revoke` moves its own copy away
        certs[name].write_bytes(easy.cert(name).read_bytes())
    easy("revoke", "s3", "superseded")
    easy("gen-crl")
    serial = {n: x509.load_pem_x509_certificate(p.read_bytes()).serial_number for n, p in certs.items()}
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(easy.pki)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, web)
        site.env.update(
            SHIRUSHI_OUTSIDE__FOLLOW_CRL=f"easy=http://127.0.0.1:{port}/crl.pem",
            SHIRUSHI_OUTSIDE__CRL_INTERVAL="2s",
            SHIRUSHI_OUTSIDE__POLL_INTERVAL="1s",
        )
        assert site.cli("init").returncode == 0
        renewal = site.data / "certs" / "outside" / "easy-ocsp.csr"
        with site.serving():
            # Added while serve runs (its embedded Redis tells the responders).
            assert site.cli("issuer", "add", "easy", "--cert", str(easy.ca)).returncode == 0
            csr = tmp_path / "ocsp.csr"
            assert site.cli("issuer", "signer-csr", "easy", "--out", str(csr)).returncode == 0
            easy.env["EASYRSA_CERT_EXPIRE"] = "10"  # well inside ca.ocsp_signer_renew_before (30 days)
            installed = site.cli("issuer", "signer-cert", "easy", "--cert", str(easy.sign_signer(csr)))
            assert installed.returncode == 0, installed.stderr
            imported = site.cli("import", "easy", "--certs", *map(str, certs.values()))
            assert imported.returncode == 0, imported.stderr
            wait_status(easy.ca, site.ocsp_url, serial["s1"], "good", timeout=30)
            wait_status(easy.ca, site.ocsp_url, serial["s2"], "good")
            # s3 was revoked on the CRL before: serve's first fetch of the URL brings it.
            assert reason_of(wait_status(easy.ca, site.ocsp_url, serial["s3"], "revoked")) == "superseded"

            easy("revoke", "s2", "keyCompromise")
            easy("gen-crl")
            started = time.monotonic()
            answer = wait_status(easy.ca, site.ocsp_url, serial["s2"], "revoked", timeout=20)
            assert reason_of(answer) == "keyCompromise"
            assert time.monotonic() - started < 20
            assert status_of(ocsp_query(easy.ca, site.ocsp_url, serial=serial["s1"])) == "good"
            assert not renewal.exists()  # checked at start and hourly

        # The delegated signer nears its end: at start, a warning and a CSR for easy-rsa to sign;
        # /metrics shows the time left (as it does for Shirushi's own signer).
        with site.serving():
            assert "outside signer renewal due" in site.log() and "easy OCSP signer certificate ends" in site.log()
            fresh = x509.load_pem_x509_csr(renewal.read_bytes())
            assert fresh.public_key() == x509.load_pem_x509_csr(csr.read_bytes()).public_key()
            wait_port(site.metrics_port, site.proc)
            with urllib.request.urlopen(site.metrics_url + "/metrics", timeout=20) as resp:
                lines = [x for x in resp.read().decode().splitlines() if x.startswith("shirushi_ocsp_signer_expiry")]
            left = {x.partition("{")[2].partition("}")[0]: float(x.rpartition(" ")[2]) for x in lines}
            assert 9 * 86400 < left['issuer="easy",outside="true"'] <= 10 * 86400, lines
            assert left['issuer="issuing-ca",outside="false"'] > 30 * 86400, lines
            # Still answered with the old signer meanwhile (tryLater until the refill of a Redis
            # that came back empty with serve: outside CAs are not signed on the live path).
            wait_status(easy.ca, site.ocsp_url, serial["s1"], "good", timeout=30)
            assert reason_of(wait_status(easy.ca, site.ocsp_url, serial["s2"], "revoked")) == "keyCompromise"
    finally:
        web.terminate()
        web.wait(timeout=30)
