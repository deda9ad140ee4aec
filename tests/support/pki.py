"""Test helpers: CSRs and a CLI runner against a temporary data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

SUBJECT = {"C": "JP", "ST": "Tokyo", "L": "Chiyoda-ku", "O": "Example KK"}
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}


def make_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_csr(
    dns: list[str] | None = None,
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | None = None,
    subject: dict[str, str] | None = None,
    cn: str | None = None,
) -> bytes:
    """A PEM CSR with the policy's subject fields and `dns` as SAN dNSNames."""
    key = key or make_key()
    dns = ["www.example.jp"] if dns is None else dns
    fields = dict(SUBJECT if subject is None else subject)
    if cn or dns:
        fields.setdefault("CN", cn or dns[0])
    name = x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in fields.items()])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.PEM)


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
    env["SHIRUSHI_DATA_DIR"] = str(data_dir)
    env["SHIRUSHI_METRICS__LISTEN"] = ""  # tests that want the metrics listener give it a free port
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], *, input: bytes | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m shirushi ARGS` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "shirushi", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input.decode() if input else None,
    )


def split_pem(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode())
