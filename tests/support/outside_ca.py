"""Test helper: real outside CAs made with Debian's easy-rsa and with `openssl ca`, and stock
`openssl ocsp` queries against a responder (they run outside programs: mark tests `oracle`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

EASYRSA = Path("/usr/share/easy-rsa/easyrsa")

OCSP_TYPE = """basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
extendedKeyUsage = OCSPSigning
keyUsage = critical,digitalSignature
noCheck = ignored
"""


def run(args: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


class EasyRSA:
    """An easy-rsa PKI in `root/pki` (init-pki, build-ca nopass), with an `ocsp` certificate type."""

    def __init__(self, root: Path, ocsp_url: str = "") -> None:
        if not EASYRSA.exists():
            pytest.fail("easy-rsa is not installed (scripts/setup --dev installs it)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.pki = root / "pki"
        self.env = {**os.environ, "EASYRSA_BATCH": "1", "EASYRSA_PKI": str(self.pki)}
        self("init-pki")
        # Custom types live in the PKI (easy-rsa looks there first): the delegated OCSP signer's,
        # and the AIA OCSP URL in every certificate it signs.
        shutil.copytree(EASYRSA.parent / "x509-types", self.pki / "x509-types")
        (self.pki / "x509-types" / "ocsp").write_text(OCSP_TYPE)
        if ocsp_url:
            with open(self.pki / "x509-types" / "COMMON", "a") as fh:
                fh.write(f"authorityInfoAccess = OCSP;URI:{ocsp_url}\n")
        run([EASYRSA, "build-ca", "nopass"], env={**self.env, "EASYRSA_REQ_CN": "Test Easy CA"}, cwd=root)

    def __call__(self, *args: str) -> str:
        return run([EASYRSA, *args], env=self.env, cwd=self.root)

    @property
    def ca(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def index(self) -> Path:
        return self.pki / "index.txt"

    @property
    def crl(self) -> Path:
        return self.pki / "crl.pem"

    def cert(self, name: str) -> Path:
        return self.pki / "issued" / f"{name}.crt"

    def sign_signer(self, csr: Path, name: str = "shirushi-ocsp") -> Path:
        self("import-req", str(csr), name)
        self("sign-req", "ocsp", name)
        return self.cert(name)


OPENSSL_CNF = """[ ca ]
default_ca = the_ca

[ the_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 7
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = leaf

[ anything ]
commonName = supplied

[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityInfoAccess = OCSP;URI:{ocsp_url}

[ ocsp ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
noCheck = ignored

[ no_eku ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature

[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = Test OpenSSL CA

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


class OpenSSLCA:
    """An `openssl ca` CA with its own configuration in `root`."""

    def __init__(self, root: Path, ocsp_url: str = "http://127.0.0.1:1/") -> None:
        self.root = root
        (root / "newcerts").mkdir(parents=True)
        (root / "index.txt").write_text("")
        (root / "serial").write_text("1000\n")
        (root / "crlnumber").write_text("01\n")
        self.cnf = root / "ca.cnf"
        self.cnf.write_text(OPENSSL_CNF.format(dir=root, ocsp_url=ocsp_url))
        run(["openssl", "req", "-new", "-x509", "-config", self.cnf, "-extensions", "v3_ca", "-newkey", "rsa:2048",
             "-nodes", "-keyout", root / "ca.key", "-out", self.ca, "-days", "3650"])  # fmt: skip

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @property
    def index(self) -> Path:
        return self.root / "index.txt"

    def issue(self, name: str, extensions: str = "leaf") -> Path:
        key, csr, cert = (self.root / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", f"/CN={name}"])  # fmt: skip
        return self.sign(csr, cert, extensions)

    def sign(self, csr: Path, cert: Path, extensions: str = "leaf") -> Path:
        run(["openssl", "ca", "-batch", "-config", self.cnf, "-extensions", extensions, "-in", csr, "-out", cert,
             "-notext"])  # fmt: skip
        return cert

    def revoke(self, cert: Path, reason: str, *extra: str) -> None:
        run(["openssl", "ca", "-config", self.cnf, "-revoke", cert, "-crl_reason", reason, *extra])

    def gen_crl(self, out: Path) -> Path:
        run(["openssl", "ca", "-config", self.cnf, "-gencrl", "-out", out])
        return out


def ocsp_query(ca: Path, url: str, *, cert: Path | None = None, serial: int | None = None) -> str:
    """Stock `openssl ocsp`, verifying with only the outside CA's certificate as -CAfile."""
    target = ["-cert", str(cert)] if cert is not None else ["-serial", hex(serial or 0)]
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", str(ca), *target, "-url", url, "-CAfile", str(ca), "-no_nonce", "-resp_text"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


def status_of(output: str) -> str:
    """good / revoked / unknown, or the responder error, from `ocsp_query`'s output."""
    if "Responder Error" in output:
        return re.search(r"Responder Error: (\w+)", output).group(1)  # type: ignore[union-attr]
    assert "Response verify OK" in output, output
    return re.search(r": (good|revoked|unknown)\n", output).group(1)  # type: ignore[union-attr]


def reason_of(output: str) -> str:
    match = re.search(r"Reason: (\w+)", output)
    return match.group(1) if match else ""
