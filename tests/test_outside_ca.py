"""Outside CAs made by the real tools (Debian's easy-rsa, `openssl ca`): Shirushi imports their
index, certificates and CRLs, its delegated signer is certified by them, and stock `openssl ocsp`
given only the outside CA's certificate verifies every answer (good / revoked, reason, time)."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.ocsp_pki import ResponderProcess
from support.outside_ca import EasyRSA, OpenSSLCA, ocsp_query, reason_of, status_of
from support.pki import cli_env, run_cli

pytestmark = [pytest.mark.oracle, pytest.mark.e2e]


class Shirushi:
    """A data directory driven through the CLI, on the test's Redis."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.data = root / "data"
        self.env = cli_env(self.data, SHIRUSHI_REDIS__URL=redis_url)
        self.redis_url = redis_url
        assert self("init").returncode == 0

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env)

    def ok(self, *args: str) -> str:
        result = run_cli(list(args), self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def fails(self, *args: str) -> str:
        result = run_cli(list(args), self.env)
        assert result.returncode != 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr

    def delegate(self, name: str, sign: object) -> str:
        """signer-csr, have the outside CA sign it (`sign(csr) -> cert path`), signer-cert."""
        csr = self.root / f"{name}-ocsp.csr"
        self.ok("issuer", "signer-csr", name, "--out", str(csr))
        return self.ok("issuer", "signer-cert", name, "--cert", str(sign(csr)))  # type: ignore[operator]

    def responder(self) -> ResponderProcess:
        return ResponderProcess(
            self.root / "responder", {"SHIRUSHI_DATA_DIR": str(self.data), "SHIRUSHI_REDIS__URL": self.redis_url}
        )

    def snapshot(self) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.data / "shirushi.db") as db:
            return db.execute(
                "select issuer_id, serial, revoked_at, revocation_reason, length(der) from certificates order by serial"
            ).fetchall()


def index_lines(path: Path) -> dict[str, list[str]]:
    """serial (upper hex) -> the index line's fields."""
    return {f[3]: f for f in (line.split("\t") for line in path.read_text().splitlines())}


def revocation_time(field: str) -> str:
    """The index's revocation time as `openssl ocsp` prints it ("Dec  2 19:30:10 2026 GMT")."""
    t = dt.datetime.strptime(field.split(",")[0], "%y%m%d%H%M%SZ")
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S %Y} GMT"


@pytest.fixture
def easy(tmp_path: Path) -> EasyRSA:
    pki = EasyRSA(tmp_path / "easyrsa")
    for name in ("s1", "s2", "s3"):
        pki("build-server-full", name, "nopass")
    for name in ("c1", "c2"):
        pki("build-client-full", name, "nopass")
    return pki


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_easyrsa_index_good_revoked_reason_time(tmp_path: Path, redis_url: str, easy: EasyRSA) -> None:
    serials = {n: serial_of(easy.cert(n)) for n in ("s1", "s2", "s3", "c1", "c2")}
    easy("revoke", "s2", "keyCompromise")
    easy("revoke", "c2", "superseded")
    easy("revoke", "s3", "cessationOfOperation")
    easy("gen-crl")
    shirushi = Shirushi(tmp_path, redis_url)
    shirushi.ok("issuer", "add", "easy", "--cert", str(easy.ca))
    out = shirushi.delegate("easy", easy.sign_signer)
    assert "lifetime 825 days" in out  # easy-rsa's default: a warning, not a refusal
    out = shirushi.ok("import", "easy", "--openssl-index", str(easy.index))
    assert "6 new" in out and "3 newly revoked" in out, out  # five and the signer
    lines = index_lines(easy.index)
    with shirushi.responder() as responder:
        for name, reason in (("s1", ""), ("c1", ""), ("s2", "keyCompromise"), ("c2", "superseded"),
                             ("s3", "cessationOfOperation")):  # fmt: skip
            answer = ocsp_query(easy.ca, responder.url, serial=serials[name])
            assert status_of(answer) == ("revoked" if reason else "good"), (name, answer)
            assert reason_of(answer) == reason, answer
            if reason:
                field = next(f[2] for s, f in lines.items() if int(s, 16) == serials[name])
                assert f"Revocation Time: {revocation_time(field)}" in answer, answer
        # By certificate too (openssl builds the CertID from the certificate and the issuer).
        assert status_of(ocsp_query(easy.ca, responder.url, cert=easy.cert("s1"))) == "good"
        # A serial the CA never issued is never good.
        assert status_of(ocsp_query(easy.ca, responder.url, serial=0x1234567)) == "unauthorized"
    # Shirushi's own `revoke` leaves the outside CA's certificates to that CA.
    err = shirushi.fails("revoke", format(serials["s1"], "X"), "--reason", "superseded")
    assert "outside CA easy" in err and "easyrsa revoke" in err and len(err.strip().splitlines()) == 1


def test_easyrsa_crl_and_certificates_only(tmp_path: Path, redis_url: str, easy: EasyRSA) -> None:
    serials = {n: serial_of(easy.cert(n)) for n in ("s1", "s2", "c1", "c2")}
    easy("revoke", "s2", "keyCompromise")
    easy("revoke", "c2", "affiliationChanged")
    easy("gen-crl")  # easy-rsa's CRL has no CRL Number: ordered by thisUpdate
    shirushi = Shirushi(tmp_path, redis_url)
    shirushi.ok("issuer", "add", "easy", "--cert", str(easy.ca))
    shirushi.delegate("easy", easy.sign_signer)
    out = shirushi.ok("import", "easy", "--certs", str(easy.pki / "issued"))
    shirushi.ok("import", "easy", "--crl", str(easy.crl))
    assert "Traceback" not in out
    with shirushi.responder() as responder:
        for name, reason in (("s1", ""), ("c1", ""), ("s2", "keyCompromise"), ("c2", "affiliationChanged")):
            answer = ocsp_query(easy.ca, responder.url, serial=serials[name])
            assert status_of(answer) == ("revoked" if reason else "good"), (name, answer)
            assert reason_of(answer) == reason
        assert status_of(ocsp_query(easy.ca, responder.url, serial=0x7654321)) == "unauthorized"
    # The same CRL again changes nothing; an older one is refused.
    assert "0 new, 0 newly revoked" in shirushi.ok("import", "easy", "--crl", str(easy.crl))


def test_bad_inputs_one_line_and_nothing_changes(tmp_path: Path, redis_url: str, easy: EasyRSA) -> None:
    other = OpenSSLCA(tmp_path / "other")
    stranger = other.issue("stranger.example")
    shirushi = Shirushi(tmp_path, redis_url)
    shirushi.ok("issuer", "add", "easy", "--cert", str(easy.ca))
    csr = tmp_path / "ocsp.csr"
    shirushi.ok("issuer", "signer-csr", "easy", "--out", str(csr))
    easy("gen-crl")
    shirushi.ok("import", "easy", "--openssl-index", str(easy.index))
    shirushi.ok("import", "easy", "--crl", str(easy.crl))
    before = shirushi.snapshot()

    # A certificate of another CA.
    err = shirushi.fails("import", "easy", "--certs", str(stranger))
    assert "was not issued by easy" in err and len(err.strip().splitlines()) == 1, err
    # A truncated index: the cut line is reported by number, nothing else changes.
    text = easy.index.read_text()
    cut = tmp_path / "index-truncated.txt"
    cut.write_text(text[: text.rindex("\t")])
    err = shirushi.fails("import", "easy", "--openssl-index", str(cut))
    assert re.search(rf"line {len(text.splitlines())}: .*fields", err) and len(err.strip().splitlines()) == 1, err
    # A CRL with a bad signature.
    bad = bytearray(x509.load_pem_x509_crl(easy.crl.read_bytes()).public_bytes(serialization.Encoding.DER))
    bad[-5] ^= 0x01
    (tmp_path / "bad.crl").write_bytes(bytes(bad))
    err = shirushi.fails("import", "easy", "--crl", str(tmp_path / "bad.crl"))
    assert "signature does not verify" in err and len(err.strip().splitlines()) == 1, err
    # An older CRL (easy-rsa's carry no number: thisUpdate decides).
    older = tmp_path / "older.crl"
    older.write_bytes(easy.crl.read_bytes())
    time.sleep(1.1)
    easy("gen-crl")
    shirushi.ok("import", "easy", "--crl", str(easy.crl))
    err = shirushi.fails("import", "easy", "--crl", str(older))
    assert "older than the last imported" in err and len(err.strip().splitlines()) == 1, err
    # A signer certificate without the OCSPSigning EKU.
    easy("import-req", str(csr), "no-eku")
    easy("sign-req", "client", "no-eku")
    err = shirushi.fails("issuer", "signer-cert", "easy", "--cert", str(easy.cert("no-eku")))
    assert "OCSPSigning" in err and len(err.strip().splitlines()) == 1, err
    # Another CA's certificate as the signer's.
    err = shirushi.fails("issuer", "signer-cert", "easy", "--cert", str(stranger))
    assert "not issued by this CA" in err and len(err.strip().splitlines()) == 1, err
    assert shirushi.snapshot() == before
    assert not (shirushi.data / "certs" / "outside" / "easy-ocsp.pem").exists()
