"""End to end against a running `shirushi serve` (embedded Redis, SQLite, file keys).

Outside oracles judge the results: `openssl ocsp`, GnuTLS `ocsptool`, curl, `openssl crl` and
`openssl verify -crl_check`, pkilint's `lint_ocsp_response` and `lint_crl`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pki import make_csr, make_key, split_pem
from support.serving import Site

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

VENV_BIN = Path(__file__).parents[1] / ".venv" / "bin"


def tool(name: str) -> str:
    return shutil.which(name) or str(VENV_BIN / name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("serve"), SHIRUSHI_API__TOKEN="test-token")
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


class Leaf:
    def __init__(self, site: Site, directory: Path, *dns: str, expect: tuple[int, ...] = (0,)) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.key = make_key()
        (directory / "req.pem").write_bytes(make_csr(list(dns) or ["www.example.jp"], key=self.key))
        result = site.cli("issue", "--csr", str(directory / "req.pem"))
        assert result.returncode in expect, result.stderr
        self.cert, self.issuer = split_pem(result.stdout)
        self.serial = format(self.cert.serial_number, "X")
        self.cert_path = directory / "leaf.pem"
        self.issuer_path = directory / "issuer.pem"
        self.root_path = site.data / "certs" / "root.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issuer_path.write_bytes(self.issuer.public_bytes(serialization.Encoding.PEM))

    def request(self, alg: hashes.HashAlgorithm | None = None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(self.cert, self.issuer, alg or hashes.SHA1())
        return builder.build().public_bytes(serialization.Encoding.DER)


def openssl_ocsp(site: Site, leaf: Leaf, *extra: str) -> str:
    result = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(leaf.issuer_path),
            *extra,
            "-cert",
            str(leaf.cert_path),
            "-url",
            site.ocsp_url,
            "-CAfile",
            str(leaf.root_path),
            "-no_nonce",
            "-resp_text",
            "-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def post(site: Site, body: bytes) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(site.ocsp_url, data=body, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers, resp.read()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """GET; the headers answer case-insensitively."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def api(
    site: Site, method: str, path: str, body: object = None, token: str | None = "test-token"
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(site.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- OCSP -----------------------------------------------------------------------------------


def test_openssl_ocsp_good_and_verified(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    out = openssl_ocsp(site, leaf)
    assert "Response verify OK" in out, out
    assert f"{leaf.cert_path}: good" in out
    assert "Hash Algorithm: sha1" in out


def test_sha256_certid_is_echoed(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    out = openssl_ocsp(site, leaf, "-sha256")
    assert "Response verify OK" in out, out
    assert f"{leaf.cert_path}: good" in out
    assert "Hash Algorithm: sha256" in out


def ocsptool_good(site: Site, leaf: Leaf, tmp_path: Path) -> None:
    """GnuTLS `ocsptool --ask` says good and verifies the response."""
    result = subprocess.run(
        [
            "ocsptool",
            f"--ask={site.ocsp_url}",
            "--load-issuer",
            str(leaf.issuer_path),
            "--load-cert",
            # GnuTLS wants the delegated signer's issuer (our issuing CA) in the trust set.
            str(leaf.cert_path),
            "--load-trust",
            str(leaf.issuer_path),
            "--outfile",
            str(tmp_path / "r.der"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Certificate Status: good" in out
    assert "Verifying OCSP Response: Success" in out


def test_gnutls_ocsptool_reports_good(site: Site, tmp_path: Path) -> None:
    ocsptool_good(site, Leaf(site, tmp_path), tmp_path)


def test_curl_get_url_encoded_and_raw(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    b64 = base64.b64encode(leaf.request()).decode()
    for path in (urllib.parse.quote(b64, safe=""), b64, "/" + b64):
        result = subprocess.run(
            [
                "curl",
                "-s",
                "-D",
                str(tmp_path / "h.txt"),
                "-o",
                str(tmp_path / "r.der"),
                "--path-as-is",
                site.ocsp_url + path,
            ],
            capture_output=True,
            timeout=30,
        )
        assert result.returncode == 0
        headers = (tmp_path / "h.txt").read_text().lower()
        assert "content-type: application/ocsp-response" in headers
        assert "cache-control: max-age=" in headers and "public, no-transform, must-revalidate" in headers
        response = ocsp.load_der_ocsp_response((tmp_path / "r.der").read_bytes())
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.cert.serial_number


def test_get_caching_headers_and_304(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    url = site.ocsp_url + urllib.parse.quote(base64.b64encode(leaf.request(hashes.SHA256())).decode(), safe="")
    status, headers, body = get(url)
    assert status == 200
    response = ocsp.load_der_ocsp_response(body)
    assert response.hash_algorithm.name == "sha256"
    this_update, next_update = response.this_update_utc, response.next_update_utc
    assert next_update is not None
    assert headers["Last-Modified"] == this_update.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert headers["Expires"] == next_update.strftime("%a, %d %b %Y %H:%M:%S GMT")
    max_age = int(headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= 3600
    status, _, body = get(url, {"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""


def test_pkilint_finds_nothing_in_a_served_response(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    for alg in (hashes.SHA1(), hashes.SHA256()):
        _, _, body = post(site, leaf.request(alg))
        (tmp_path / "r.der").write_bytes(body)
        result = subprocess.run(
            [tool("lint_ocsp_response"), "lint", "-s", "WARNING", str(tmp_path / "r.der")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout


def test_unknown_serial_and_unknown_issuer_are_unauthorized(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    issuer_hashes = ocsp.load_der_ocsp_request(leaf.request())
    never_issued = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            issuer_hashes.issuer_name_hash, issuer_hashes.issuer_key_hash, 0x1234567, hashes.SHA1()
        )
        .build()
    )
    _, _, body = post(site, never_issued.public_bytes(serialization.Encoding.DER))
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    other = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(b"\x01" * 20, b"\x02" * 20, leaf.cert.serial_number, hashes.SHA1())
        .build()
    )
    _, _, body = post(site, other.public_bytes(serialization.Encoding.DER))
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_staple_writes_a_checked_response(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.cert_path.read_bytes() + leaf.issuer_path.read_bytes())
    result = site.cli("staple", "--cert", str(chain), "--out", str(tmp_path / "staple.der"))
    assert result.returncode == 0, result.stderr
    response = ocsp.load_der_ocsp_response((tmp_path / "staple.der").read_bytes())
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == "sha1"  # what nginx and HAProxy match on
    # Directory mode, HAProxy naming.
    hap = tmp_path / "haproxy"
    hap.mkdir()
    shutil.copy(chain, hap / "site.pem")
    result = site.cli("staple", "--dir", str(hap))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (hap / "site.pem.ocsp").exists()


# -- repository -----------------------------------------------------------------------------


def test_repository_serves_crl_and_ca_certificates(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    cdp = leaf.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = cdp[0].full_name[0].value
    status, headers, body = get(url)
    assert status == 200 and headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(body)
    assert crl.is_signature_valid(leaf.issuer.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=96)
    status, _, _ = get(url, {"If-None-Match": headers["ETag"]})
    assert status == 304
    aia = leaf.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ca_url = next(d.access_location.value for d in aia if d.access_method.dotted_string.endswith("48.2"))
    status, headers, body = get(ca_url)
    assert status == 200 and headers["Content-Type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(body) == leaf.issuer
    status, _, body = get(site.repo_url + "root.pem")
    assert status == 200 and b"BEGIN CERTIFICATE" in body
    status, _, body = get(site.repo_url + "cps")
    assert status == 200 and b"Certification Practice Statement" in body
    assert get(site.repo_url + "nothing.crl")[0] == 404
    # The root's ARL, at the CDP of the issuing CA certificate.
    arl_url = leaf.issuer.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
    status, _, body = get(arl_url)
    assert status == 200
    (tmp_path / "arl.der").write_bytes(body)
    lint = subprocess.run(
        [tool("lint_crl"), "lint", "-t", "ARL", "-p", "BR", "-s", "WARNING", str(tmp_path / "arl.der")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout


# -- revocation -----------------------------------------------------------------------------


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def fetch_crl(site: Site) -> tuple[bytes, x509.CertificateRevocationList]:
    _, _, body = get(site.repo_url + "issuing-ca.crl")
    return body, x509.load_der_x509_crl(body)


def test_revoke_reaches_ocsp_and_crl_before_returning(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    _, before = fetch_crl(site)
    result = site.cli("revoke", leaf.serial, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Straight after the command returned:
    out = openssl_ocsp(site, leaf)
    assert "Response verify OK" in out and f"{leaf.cert_path}: revoked" in out, out
    assert "Reason: keyCompromise" in out
    der, after = fetch_crl(site)
    assert crl_number(after) > crl_number(before)
    entry = after.get_revoked_certificate_by_serial_number(leaf.cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert after.next_update_utc is not None
    assert after.next_update_utc - after.last_update_utc == dt.timedelta(hours=96)
    (tmp_path / "crl.der").write_bytes(der)
    lint = subprocess.run(
        [tool("lint_crl"), "lint", "-t", "CRL", "-p", "BR", "-s", "WARNING", str(tmp_path / "crl.der")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    (tmp_path / "crl.pem").write_bytes(after.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CRLfile",
            str(tmp_path / "crl.pem"),
            "-CAfile",
            str(leaf.root_path),
            "-untrusted",
            str(leaf.issuer_path),
            str(leaf.cert_path),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode != 0
    assert "certificate revoked" in verify.stdout + verify.stderr
    # The audit record says when it was asked for, by when it had to be done, and when it was.
    audit = site.cli("revoke", leaf.serial, "--reason", "superseded")
    assert audit.returncode == 5 and "already revoked" in audit.stderr


def test_revoke_errors_are_one_line(site: Site, tmp_path: Path) -> None:
    leaf = Leaf(site, tmp_path)
    cases = [
        (["revoke", "ABCDEF", "--reason", "superseded"], 4, "no certificate with serial abcdef"),
        (["revoke", leaf.serial, "--reason", "certificateHold"], 3, "suspension is not offered"),
        (["revoke", leaf.serial, "--reason", "removeFromCRL"], 3, "suspension is not offered"),
        (["revoke", leaf.serial, "--reason", "cACompromise"], 3, "CA certificates only"),
        (["revoke", leaf.serial, "--reason", "bogus"], 3, "unknown reason 'bogus'"),
        (["revoke", "xyz", "--reason", "superseded"], 2, "not hexadecimal"),
        (["revoke", leaf.serial, "--reason", "superseded", "--at", "2026-01-01T00:00:00Z"], 3, "only allowed"),
    ]
    for args, code, message in cases:
        result = site.cli(*args)
        assert result.returncode == code, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert "good" in openssl_ocsp(site, leaf)


def test_revocation_reaches_responders_within_the_bound(site: Site, tmp_path: Path) -> None:
    """From the moment `revoke` returns, the responder answers revoked (target p99 < 100 ms, at most 1 s)."""
    from shirushi import config
    from shirushi.backend import Backend

    settings = config.load(None, environ=site.env)
    backend = Backend(settings)
    issuing = split_pem(site.cli("ca-certs").stdout)[0]
    delays = []
    try:
        for _ in range(20):
            issued = backend.authority.issue(make_csr())
            request = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(issued.certificate, issuing, hashes.SHA1())
                .build()
                .public_bytes(serialization.Encoding.DER)
            )
            assert ocsp.load_der_ocsp_response(post(site, request)[2]).certificate_status == ocsp.OCSPCertStatus.GOOD
            backend.revoker.revoke(issued.certificate.serial_number, "superseded")
            returned = time.monotonic()
            while True:
                status = ocsp.load_der_ocsp_response(post(site, request)[2]).certificate_status
                if status == ocsp.OCSPCertStatus.REVOKED:
                    break
                assert time.monotonic() - returned < 1.0, "revocation not visible within 1 s"
                time.sleep(0.005)
            delays.append(time.monotonic() - returned)
    finally:
        backend.close()
    assert max(delays) < 1.0
    print(
        f"revocation visible after: median {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms"
    )


# -- API ------------------------------------------------------------------------------------


def test_api_issue_show_revoke(site: Site) -> None:
    status, body = api(site, "POST", "/api/v1/certificates", {"csr": make_csr(["api.example.jp"]).decode()})
    assert status == 201, body
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    chain = split_pem(body["chain"])
    assert [c.subject == c.issuer for c in chain] == [False, True]  # issuing CA, then the root
    assert body["serial"] == format(cert.serial_number, "X")
    status, record = api(site, "GET", f"/api/v1/certificates/{body['serial']}")
    assert status == 200 and record["status"] == "good" and record["revocation"] is None
    status, record = api(site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "superseded"})
    assert status == 200 and record["status"] == "revoked" and record["revocation"]["reason"] == "superseded"
    assert record["key_blocked"] is False
    status, err = api(site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "superseded"})
    assert status == 409 and err["error"] == "conflict"
    status, err = api(site, "POST", "/api/v1/certificates/ABCDEF/revoke", {"reason": "superseded"})
    assert status == 404 and set(err) == {"error", "detail"}


def test_api_errors(site: Site) -> None:
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token=None)
    assert status == 401
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token="wrong")
    assert status == 401
    # 400: not of the documented form (the schema); 422: of that form, but its content is refused.
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": "garbage"})
    assert status == 400 and err["error"] == "bad_request" and "'csr'" in err["detail"], err
    framed = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": framed})
    assert status == 422 and "not a certificate signing request" in err["detail"], err
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode(), "dyas": 30})
    assert status == 400 and "dyas" in err["detail"], err  # a misspelt field is not ignored
    status, err = api(site, "POST", "/api/v1/certificates", [1, 2])
    assert status == 400
    status, err = api(site, "POST", "/api/v1/key-compromise", json.loads("[" * 50 + "]" * 50), token=None)
    assert status == 400
    deep = urllib.request.Request(site.api_url + "/api/v1/key-compromise", data=b"[" * 100000, method="POST")
    try:
        urllib.request.urlopen(deep, timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 400 and json.loads(exc.read())["error"] == "bad_request"
    status, body = api(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()})
    status, err = api(site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "certificateHold"})
    assert status == 400
    # privilegeWithdrawn is for the CA to choose (BR 7.2.2), not the subscriber.
    status, err = api(site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "privilegeWithdrawn"})
    assert status == 400 and "superseded" in err["detail"] and "privilegeWithdrawn" not in err["detail"], err
    status, err = api(site, "GET", "/api/v1/certificates/0")
    assert status == 400 and "serial" in err["detail"], err
    status, doc = api(site, "GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"


def test_key_compromise_report_revokes_and_blocks(site: Site) -> None:
    key = make_key()
    serials = []
    for name in ("a.example.jp", "b.example.jp"):
        status, body = api(site, "POST", "/api/v1/certificates", {"csr": make_csr([name], key=key).decode()})
        assert status == 201
        serials.append(body["serial"])
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    status, body = api(site, "POST", "/api/v1/key-compromise", {"private_key": pem}, token=None)
    assert status == 200 and sorted(body["revoked"]) == sorted(serials)
    for serial in serials:
        record = api(site, "GET", f"/api/v1/certificates/{serial}")[1]
        assert record["revocation"]["reason"] == "keyCompromise"
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": make_csr(key=key).decode()})
    assert status == 422 and "blocked" in err["detail"]


def test_api_revoke_with_key_compromise_blocks_the_key(site: Site) -> None:
    """BR 6.1.1.3: the subscriber's keyCompromise revocation blocks the key; the answer says so."""
    key = make_key()
    status, body = api(site, "POST", "/api/v1/certificates", {"csr": make_csr(["kc.example.jp"], key=key).decode()})
    assert status == 201, body
    status, record = api(site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "keyCompromise"})
    assert status == 200, record
    assert record["revocation"]["reason"] == "keyCompromise" and record["key_blocked"] is True
    status, err = api(site, "POST", "/api/v1/certificates", {"csr": make_csr(["kc2.example.jp"], key=key).decode()})
    assert status == 422 and "blocked" in err["detail"], err


# -- restarts -------------------------------------------------------------------------------


def test_kill_after_revoke_and_restart(tmp_path: Path) -> None:
    """kill -9 of serve right after a revoke: its responders stop by themselves, and a new serve
    (which shuts down the orphaned Redis) answers revoked, and good for a certificate issued while
    nothing ran, from the moment its port opens."""
    site = Site(tmp_path, SHIRUSHI_API__TOKEN="t")
    assert site.cli("init").returncode == 0
    with site.serving():
        leaf = Leaf(site, tmp_path / "leaf")
        assert site.cli("revoke", leaf.serial, "--reason", "superseded").returncode == 0
        site.stop(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "responder" in site.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "responder" not in site.processes()
        # Issued while serve is down: exit 8 with the OCSP response pending, or 0 when the
        # killed serve's orphaned Redis took it (the restart discards that Redis and reloads).
        late = Leaf(site, tmp_path / "late", expect=(0, 8))
        site.start()
        assert f"{late.cert_path}: good" in openssl_ocsp(site, late)
        out = openssl_ocsp(site, leaf)
        assert f"{leaf.cert_path}: revoked" in out and "Reason: superseded" in out
        _, crl = fetch_crl(site)
        assert crl.get_revoked_certificate_by_serial_number(leaf.cert.serial_number) is not None
    assert site.proc is None
    assert site.processes() == ""


def test_second_serve_on_the_same_data_is_refused(site: Site) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shirushi", "serve"], env=site.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 6
    assert result.stderr.strip() == f"shirushi: error: another `shirushi serve` is running on {site.data}"


def test_sigterm_stops_everything(tmp_path: Path) -> None:
    site = Site(tmp_path, SHIRUSHI_API__TOKEN="t")
    assert site.cli("init").returncode == 0
    site.start()
    assert site.stop(signal.SIGTERM) == 0
    time.sleep(0.5)
    assert site.processes() == ""
