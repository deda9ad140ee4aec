"""ECDSA P-256 / P-384 subscriber keys (BR 6.1.5, 7.1.3.2), enabled by `ca.subscriber_key_types`.

RSA stays the default: an ECDSA CSR is refused with a message naming the option. Enabled, the
certificate carries the subscriber's EC key, keyUsage digitalSignature only (BR 7.1.2.7.11), and
the issuing CA's RSA signature; `openssl verify` and pkilint judge the result.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from support.pki import cli_env, make_csr, run_cli, split_pem
from test_issue import BIN, non_loopback_errors

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

CURVES = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1()}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> dict[str, str]:
    data = tmp_path_factory.mktemp("ecca") / "data"
    env = cli_env(data, SHIRUSHI_REDIS__URL=redis_server)
    result = run_cli(["init"], env)
    assert result.returncode == 0, result.stderr
    return env


def issue(env: dict[str, str], directory: Path, csr: bytes) -> subprocess.CompletedProcess[str]:
    (directory / "req.pem").write_bytes(csr)
    return run_cli(["issue", "--csr", str(directory / "req.pem")], env)


def test_ecdsa_csr_refused_by_default_naming_the_option(ca: dict[str, str], tmp_path: Path) -> None:
    result = issue(ca, tmp_path, make_csr(key=ec.generate_private_key(ec.SECP256R1())))
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "shirushi: error: key refused: ECDSA P-256 subscriber keys are not enabled on this CA (accepted: RSA); "
        "add 'ecdsa-p256' to ca.subscriber_key_types to accept them (BR 6.1.5)"
    ]


@pytest.mark.parametrize("kind", sorted(CURVES))
def test_ecdsa_certificate_profile_and_oracles(ca: dict[str, str], tmp_path: Path, kind: str) -> None:
    env = {**ca, "SHIRUSHI_CA__SUBSCRIBER_KEY_TYPES": f"rsa,{kind}"}
    key = ec.generate_private_key(CURVES[kind])
    result = issue(env, tmp_path, make_csr(["ec.example.jp"], key=key))
    assert result.returncode == 0, result.stderr
    leaf, issuing = split_pem(result.stdout)
    public = leaf.public_key()
    assert (
        isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == key.public_key().public_numbers()
    )
    # Signed by the issuing CA's RSA key, as for RSA subscribers.
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and not usage.value.key_encipherment and not usage.value.key_agreement
    assert not usage.value.key_cert_sign and not usage.value.content_commitment
    # An RSA CSR still gets the RSA profile.
    rsa_leaf = split_pem(issue(env, tmp_path, make_csr(["rsa.example.jp"])).stdout)[0]
    assert rsa_leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment

    (tmp_path / "leaf.pem").write_text(
        result.stdout.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    (tmp_path / "issuing.pem").write_text(issuing.public_bytes(serialization.Encoding.PEM).decode())
    root = Path(ca["SHIRUSHI_DATA_DIR"]) / "certs" / "root.pem"
    chain = ["-untrusted", str(tmp_path / "issuing.pem"), str(tmp_path / "leaf.pem")]
    verify = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(root), *chain],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stdout + verify.stderr
    lint = subprocess.run(
        [str(BIN), "lint", "-t", "OV-FINAL-CERTIFICATE", "-s", "WARNING", str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
    )
    findings = [line for line in lint.stdout.splitlines() if "(ERROR)" in line or "(FATAL)" in line]
    assert non_loopback_errors("\n".join(findings)) == [], lint.stdout
    # Nothing said about the key or its usage, even as a warning.
    about_key = ("key_usage", "public_key", "rsa", "ecdsa", "keyencipherment", "digitalsignature")
    assert not [line for line in lint.stdout.lower().splitlines() if any(w in line for w in about_key)], lint.stdout
    assert "internal_domain_name" in lint.stdout  # proof the linter ran on this certificate


def test_other_curves_refused_even_when_ecdsa_is_enabled(ca: dict[str, str], tmp_path: Path) -> None:
    env = {**ca, "SHIRUSHI_CA__SUBSCRIBER_KEY_TYPES": "rsa,ecdsa-p256,ecdsa-p384"}
    result = issue(env, tmp_path, make_csr(key=ec.generate_private_key(ec.SECP521R1())))
    assert result.returncode == 3
    assert "curve secp521r1 is not accepted; only P-256 and P-384 (BR 6.1.5)" in result.stderr
    bad = run_cli(["init"], {**ca, "SHIRUSHI_CA__SUBSCRIBER_KEY_TYPES": "rsa,ecdsa-p521"})
    assert bad.returncode == 2 and "ca.subscriber_key_types" in bad.stderr, bad.stderr
