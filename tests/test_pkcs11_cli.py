"""The whole CA on a SoftHSM2 token through the CLI: init, issue, presign, revoke, CRL, serve.

No private key material may land under data_dir; the token must hold the keys as sensitive and
never extractable; a wrong PIN, a missing token or a missing module is one line and a non-zero
exit. `openssl` checks what the token signed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from support.pki import make_csr, split_pem
from support.serving import Site
from support.softhsm import LABEL, SoftHSM, make_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHSM:
    """A token of its own, so keys made by other tests cannot be mistaken for ours."""
    return make_tokens(tmp_path_factory.mktemp("hsm-cli"), (LABEL,), reset_on_fork=True)


def pkcs11_env(hsm: SoftHSM, **extra: str) -> dict[str, str]:
    return {
        "SOFTHSM2_CONF": str(hsm.conf),
        "SHIRUSHI_CA__KEY_BACKEND": "pkcs11",
        "SHIRUSHI_PKCS11__MODULE": hsm.module,
        "SHIRUSHI_PKCS11__TOKEN_LABEL": hsm.label,
        "SHIRUSHI_PKCS11__USER_PIN_ENV": "TEST_HSM_PIN",
        "TEST_HSM_PIN": hsm.pin,
        **extra,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, hsm: SoftHSM) -> Site:
    s = Site(tmp_path_factory.mktemp("pkcs11-site"), **pkcs11_env(hsm))
    result = s.cli("init")
    assert result.returncode == 0, result.stderr
    assert "created issuing CA key (pkcs11:" in result.stdout or "issuing" in result.stdout
    return s


def test_end_to_end_on_the_token(site: Site, tmp_path: Path) -> None:
    with site.serving():
        (tmp_path / "req.pem").write_bytes(make_csr())
        issued = site.cli("issue", "--csr", str(tmp_path / "req.pem"))
        assert issued.returncode == 0, issued.stderr
        leaf, issuing = split_pem(issued.stdout)
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
        root = site.data / "certs" / "root.pem"
        verify = subprocess.run(
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
        assert verify.returncode == 0, verify.stdout + verify.stderr

        def ocsp_status() -> str:
            return (
                subprocess.run(
                    [
                        "openssl",
                        "ocsp",
                        "-issuer",
                        str(tmp_path / "issuing.pem"),
                        "-cert",
                        str(tmp_path / "leaf.pem"),
                        "-url",
                        site.ocsp_url,
                        "-CAfile",
                        str(root),
                        "-no_nonce",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
                + "\n"
            )

        out = subprocess.run(
            [
                "openssl",
                "ocsp",
                "-issuer",
                str(tmp_path / "issuing.pem"),
                "-cert",
                str(tmp_path / "leaf.pem"),
                "-url",
                site.ocsp_url,
                "-CAfile",
                str(root),
                "-no_nonce",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Response verify OK" in out.stderr + out.stdout
        assert ": good" in out.stdout
        presign = site.cli("presign", "--all")
        assert presign.returncode == 0, presign.stderr
        assert ": good" in ocsp_status()
        serial = format(leaf.serial_number, "X")
        revoked = site.cli("revoke", serial, "--reason", "keyCompromise")
        assert revoked.returncode == 0 and revoked.stderr == "", revoked.stderr
        assert ": revoked" in ocsp_status()
        crl = site.cli("crl")
        assert crl.returncode == 0, crl.stderr
        crl_file = site.data / "repository" / "issuing-ca.crl"
        check = subprocess.run(
            [
                "openssl",
                "crl",
                "-inform",
                "DER",
                "-in",
                str(crl_file),
                "-CAfile",
                str(tmp_path / "issuing.pem"),
                "-noout",
                "-text",
            ],
            capture_output=True,
            text=True,
        )
        assert "verify OK" in check.stdout + check.stderr
        assert serial in check.stdout.replace(":", "")


def test_no_private_key_material_in_data_dir(site: Site) -> None:
    assert not (site.data / "keys").exists()
    for path in site.data.rglob("*"):
        if path.is_file() and path.suffix != ".sock":
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            # A PKCS#8 or PKCS#1 RSA private key in DER starts with these bytes.
            assert b"\x02\x01\x00\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" not in data, path


def test_token_keys_are_sensitive_and_never_extractable(site: Site, hsm: SoftHSM) -> None:
    listing = hsm.list_objects()
    blocks = [b for b in re.split(r"\n(?=\S)", listing) if b.startswith("Private Key Object")]
    labels = sorted(re.search(r"label:\s*(\S+)", b).group(1) for b in blocks)  # type: ignore[union-attr]
    assert labels == ["issuing-ca", "ocsp-signer", "root"]
    for block in blocks:
        access = re.search(r"Access:\s*(.*)", block)
        assert access is not None, block
        assert "sensitive" in access.group(1)
        assert "never extractable" in access.group(1)
        assert "extractable" not in access.group(1).replace("never extractable", "")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"TEST_HSM_PIN": "0000"}, "PIN"),
        ({"SHIRUSHI_PKCS11__TOKEN_LABEL": "no-such-token"}, "no-such-token"),
        ({"SHIRUSHI_PKCS11__MODULE": "/nonexistent/libpkcs11.so"}, "/nonexistent/libpkcs11.so"),
    ],
)
def test_token_problems_are_one_line(site: Site, tmp_path: Path, override: dict[str, str], message: str) -> None:
    (tmp_path / "req.pem").write_bytes(make_csr())
    env = {**site.env, **override}
    from support.pki import run_cli

    result = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env)
    assert result.returncode == 7, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shirushi: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    if "TEST_HSM_PIN" in override:
        assert "0000" not in result.stderr  # the PIN never reaches a message


def test_ecdsa_p256_ocsp_signer_on_the_token(tmp_path_factory: pytest.TempPathFactory, hsm: SoftHSM) -> None:
    """`ocsp.signer_key = "ecdsa-p256"` with the keys in the HSM: the token makes the P-256 key and
    signs the responses (CKM_ECDSA); `openssl ocsp` verifies them with only the root as anchor."""
    site = Site(tmp_path_factory.mktemp("pkcs11-ecdsa"), **pkcs11_env(hsm, SHIRUSHI_OCSP__SIGNER_KEY="ecdsa-p256"))
    result = site.cli("init")
    assert result.returncode == 0, result.stderr
    assert "created OCSP signer key (ecdsa-p256, pkcs11:" in result.stdout
    assert not list((site.data).rglob("*.key"))
    tmp_path = site.root
    with site.serving():
        (tmp_path / "req.pem").write_bytes(make_csr())
        issued = site.cli("issue", "--csr", str(tmp_path / "req.pem"))
        assert issued.returncode == 0, issued.stderr
        leaf, issuing = split_pem(issued.stdout)
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))

        def ask() -> str:
            out = subprocess.run(
                [
                    *("openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"), "-cert", str(tmp_path / "leaf.pem")),
                    *("-url", site.ocsp_url, "-CAfile", str(site.data / "certs" / "root.pem")),
                    *("-no_nonce", "-resp_text"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            return out.stdout + out.stderr

        out = ask()
        assert "Response verify OK" in out and ": good" in out, out
        assert "Signature Algorithm: ecdsa-with-SHA256" in out
        revoked = site.cli("revoke", format(leaf.serial_number, "X"), "--reason", "keyCompromise")
        assert revoked.returncode == 0, revoked.stderr
        out = ask()
        assert "Response verify OK" in out and ": revoked" in out, out
