"""Issuance end to end through the CLI: init, issue, ca-certs; outside oracles check the output.

Profiles are checked field by field against the policy's tables 7.1-1 (server) and 7.1-2 (OCSP
signer) and the BR profiles; `openssl verify` and pkilint check them independently.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from support.pki import cli_env, make_csr, make_key, run_cli, split_pem

BIN = Path(
    shutil.which("lint_cabf_serverauth_cert") or Path(__file__).parents[1] / ".venv/bin/lint_cabf_serverauth_cert"
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> dict[str, str]:
    data = tmp_path_factory.mktemp("ca") / "data"
    env = cli_env(data, SHIRUSHI_REDIS__URL=redis_server)
    result = run_cli(["init"], env)
    assert result.returncode == 0, result.stderr
    return env


def issue(env: dict[str, str], tmp_path: Path, csr: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "req.pem"
    path.write_bytes(csr)
    return run_cli(["issue", "--csr", str(path), *extra], env)


def data_dir(env: dict[str, str]) -> Path:
    return Path(env["SHIRUSHI_DATA_DIR"])


def count_certificates(env: dict[str, str]) -> int:
    with sqlite3.connect(data_dir(env) / "shirushi.db") as db:
        return int(db.execute("select count(*) from certificates").fetchone()[0])


def lint(path: Path, *args: str) -> str:
    result = subprocess.run([str(BIN), "lint", *args, "-s", "ERROR", str(path)], capture_output=True, text=True)
    return result.stdout


def non_loopback_errors(report: str) -> list[str]:
    lines = [line for line in report.splitlines() if "(ERROR)" in line or "(FATAL)" in line]
    # Loopback URLs in the test config are the only tolerated finding (docs/profiles.md, Loopback URLs).
    return [line for line in lines if "internal_domain_name" not in line]


def test_init_is_idempotent_and_keeps_keys(ca: dict[str, str]) -> None:
    keys = data_dir(ca) / "keys"
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    assert set(before) == {"root.key", "issuing-ca.key", "ocsp-signer.key"}
    for path in keys.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    result = run_cli(["init"], ca)
    assert result.returncode == 0
    assert "nothing to do" in result.stdout
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == before


def test_issue_prints_leaf_then_issuing_ca(ca: dict[str, str], tmp_path: Path) -> None:
    result = issue(ca, tmp_path, make_csr(["www.example.jp", "example.jp"]))
    assert result.returncode == 0, result.stderr
    certs = split_pem(result.stdout)
    assert len(certs) == 2
    leaf, issuing = certs
    assert leaf.issuer == issuing.subject
    assert issuing.subject.rfc4514_string() == "CN=Shirushi Demo Issuing CA,O=Shirushi Demo,C=JP"
    ca_certs = split_pem(run_cli(["ca-certs"], ca).stdout)
    assert [c.subject for c in ca_certs] == [issuing.subject, ca_certs[1].subject]
    assert ca_certs[1].subject == ca_certs[1].issuer  # the root comes last


def test_server_profile_field_by_field(ca: dict[str, str], tmp_path: Path) -> None:
    """Policy table 7.1-1 with BR 7.1.2.7."""
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf, issuing = split_pem(issue(ca, tmp_path, make_csr(["www.example.jp"])).stdout)
    ext = leaf.extensions
    assert leaf.version == x509.Version.v3
    assert leaf.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"
    assert 0 < leaf.serial_number < 2**159 and leaf.serial_number.bit_length() > 64
    subject = {a.oid: a.value for a in leaf.subject}
    assert subject == {
        NameOID.COUNTRY_NAME: "JP",
        NameOID.STATE_OR_PROVINCE_NAME: "Tokyo",
        NameOID.LOCALITY_NAME: "Chiyoda-ku",
        NameOID.ORGANIZATION_NAME: "Example KK",
        NameOID.COMMON_NAME: "www.example.jp",
    }
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "www.example.jp"
    ]
    policies = ext.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.2.2", "1.3.6.1.4.1.99999.1.1"]
    assert policies[1].policy_qualifiers == ["http://127.0.0.1:8081/cps"]
    cdp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in cdp[0].full_name] == ["http://127.0.0.1:8081/issuing-ca.crl"]
    aia = {
        d.access_method: d.access_location.value
        for d in ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: "http://127.0.0.1:8080/",
        AuthorityInformationAccessOID.CA_ISSUERS: "http://127.0.0.1:8081/issuing-ca.crt",
    }
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki.authority_cert_issuer is None
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    bits = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert ski == hashlib.sha1(bits).digest()  # SHA-1, 160 bits (table 7.1-1)
    with pytest.raises(x509.ExtensionNotFound):
        ext.get_extension_for_class(x509.BasicConstraints)
    # 200 days now (BR 6.3.2), counted inclusively.
    assert leaf.not_valid_before_utc >= before
    span = leaf.not_valid_after_utc - leaf.not_valid_before_utc + dt.timedelta(seconds=1)
    assert span == dt.timedelta(days=200)


def test_days_option_shortens(ca: dict[str, str], tmp_path: Path) -> None:
    leaf, _ = split_pem(issue(ca, tmp_path, make_csr(), "--days", "30").stdout)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=30, seconds=-1)


def test_issuing_ca_and_signer_profiles(ca: dict[str, str]) -> None:
    certs = data_dir(ca) / "certs"
    root = x509.load_pem_x509_certificate((certs / "root.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate((certs / "issuing-ca.pem").read_bytes())
    signer = x509.load_pem_x509_certificate((certs / "ocsp-signer.pem").read_bytes())
    # BR 7.1.2.6 subordinate CA.
    bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = issuing.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert list(issuing.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://127.0.0.1:8081/root.crl"
    issuing.verify_directly_issued_by(root)
    # Table 7.1-2 / BR 7.1.2.8 delegated OCSP responder.
    signer.verify_directly_issued_by(issuing)
    ku = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    assert list(signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.OCSP_SIGNING
    ]
    nocheck = signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert not nocheck.critical
    assert nocheck.value.public_bytes() == b"\x05\x00"
    for forbidden in (
        x509.CertificatePolicies,
        x509.CRLDistributionPoints,
        x509.SubjectAlternativeName,
        x509.AuthorityInformationAccess,
    ):
        with pytest.raises(x509.ExtensionNotFound):
            signer.extensions.get_extension_for_class(forbidden)
    life = signer.not_valid_after_utc - signer.not_valid_before_utc
    assert dt.timedelta(days=360) <= life <= dt.timedelta(days=370)


def test_openssl_verifies_leaf_and_chain(ca: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "chain.pem").write_text(issue(ca, tmp_path, make_csr()).stdout)
    leaf_pem, issuing_pem = (tmp_path / "chain.pem").read_text().split("-----END CERTIFICATE-----\n")[:2]
    (tmp_path / "leaf.pem").write_text(leaf_pem + "-----END CERTIFICATE-----\n")
    (tmp_path / "issuing.pem").write_text(issuing_pem + "-----END CERTIFICATE-----\n")
    root = data_dir(ca) / "certs" / "root.pem"
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(root),
            "-untrusted",
            str(tmp_path / "issuing.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_pkilint_finds_no_error(ca: dict[str, str], tmp_path: Path) -> None:
    leaf_pem = issue(ca, tmp_path, make_csr()).stdout.split("-----END CERTIFICATE-----")[0]
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(leaf_pem + "-----END CERTIFICATE-----\n")
    certs = data_dir(ca) / "certs"
    reports = {
        "leaf": lint(leaf, "-d"),
        "issuing": lint(certs / "issuing-ca.pem", "-d"),
        "root": lint(certs / "root.pem", "-t", "ROOT-CA"),
        "signer": lint(certs / "ocsp-signer.pem", "-t", "OCSP-RESPONDER"),
    }
    for name, report in reports.items():
        assert non_loopback_errors(report) == [], f"{name}: {report}"
    # The oracle does see loopback URLs: proof that it ran on the leaf.
    assert "internal_domain_name" in reports["leaf"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: b"not a csr at all", "not a certificate signing request"),
        (lambda tmp: make_csr(key=make_key(1024)), "RSA 1024 bits is below the minimum of 2048"),
        (
            lambda tmp: make_csr([], subject={"C": "JP", "ST": "Tokyo", "L": "Chiyoda-ku", "O": "Example KK"}),
            "no DNS name",
        ),
    ],
)
def test_bad_requests_refused_nothing_stored(ca: dict[str, str], tmp_path: Path, make: object, message: str) -> None:
    before = count_certificates(ca)
    result = issue(ca, tmp_path, make(tmp_path))  # type: ignore[operator]
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert count_certificates(ca) == before


def test_tampered_csr_refused(ca: dict[str, str], tmp_path: Path) -> None:
    pem = make_csr().decode()
    body = pem.split("\n")
    # Change one base64 character in the middle of the signed part.
    line = body[3]
    body[3] = line[:10] + ("A" if line[10] != "A" else "B") + line[11:]
    before = count_certificates(ca)
    result = issue(ca, tmp_path, "\n".join(body).encode())
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "proof of possession" in result.stderr or "not a certificate signing request" in result.stderr
    assert count_certificates(ca) == before


def test_missing_csr_file(ca: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["issue", "--csr", str(tmp_path / "nope.pem")], ca)
    assert result.returncode == 2
    assert result.stderr.strip() == f"shirushi: error: CSR file {tmp_path / 'nope.pem'}: no such file"


@pytest.mark.e2e
def test_issue_before_init(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "empty")
    path = tmp_path / "req.pem"
    path.write_bytes(make_csr())
    result = run_cli(["issue", "--csr", str(path)], env)
    assert result.returncode != 0
    assert "run `shirushi init`" in result.stderr


def test_serials_unique_and_random(ca: dict[str, str], tmp_path: Path) -> None:
    csr = make_csr()
    serials = []
    for _ in range(6):
        leaf, _ = split_pem(issue(ca, tmp_path, csr).stdout)
        serials.append(leaf.serial_number)
    assert len(set(serials)) == len(serials)
    # At least 64 bits of entropy (BR 7.1): 159-bit random serials rarely fall below 2^120.
    assert all(s.bit_length() > 120 for s in serials)
    assert all(len(s.to_bytes((s.bit_length() + 8) // 8, "big")) <= 20 for s in serials)


def test_audit_record_for_each_issuance(ca: dict[str, str], tmp_path: Path) -> None:
    leaf, _ = split_pem(issue(ca, tmp_path, make_csr()).stdout)
    with sqlite3.connect(data_dir(ca) / "shirushi.db") as db:
        rows = db.execute(
            "select action, detail from audit where serial = ?", (format(leaf.serial_number, "x"),)
        ).fetchall()
        assert [r[0] for r in rows] == ["issue"]
        assert "www.example.jp" in rows[0][1]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("delete from audit")
