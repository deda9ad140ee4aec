"""A small test PKI for the CRL tests, and the outside oracles they check CRLs with.

Root CA and issuing CA (both with SKI, keyUsage keyCertSign + cRLSign), leaves issued by the
issuing CA, all made with pyca/cryptography and signed through the project's software signer.
`reference_crl` builds the same CRL with pyca's own `CertificateRevocationListBuilder`, the
yardstick the hand-encoded builder is compared with. `openssl` and `lint_crl` (pkilint) run as
real subprocesses. This module holds no tests itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from shirushi.crl import EntryLike
from shirushi.signing import SignerKey
from shirushi.signing.software import SoftwareSigner

UTC = dt.UTC
EPOCH = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)  # thisUpdate of most test CRLs
LINT_CRL = Path(sys.executable).parent / "lint_crl"


@dataclasses.dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    signer: SoftwareSigner

    @property
    def ski(self) -> bytes:
        return self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


@dataclasses.dataclass(frozen=True)
class Pki:
    root: CA
    issuing: CA

    def leaf(self, serial: int, name: str = "www.example.jp") -> x509.Certificate:
        """A server certificate from the issuing CA, valid around EPOCH."""
        key = _key(2048)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example KK"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issuing.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(EPOCH - dt.timedelta(days=30))
            .not_valid_after(EPOCH + dt.timedelta(days=60))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.issuing.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        )
        return builder.sign(SignerKey(self.issuing.signer), hashes.SHA256())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shirushi Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@functools.cache
def _key(bits: int) -> rsa.RSAPrivateKey:
    # Leaves may share one key: the CRL tests only care about serials and signatures of CAs.
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_ca(
    cn: str,
    *,
    parent: CA | None = None,
    with_ski: bool = True,
    crl_sign: bool = True,
    serial: int = 1,
) -> CA:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = SoftwareSigner(key, f"test:{cn}")
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=UTC))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if parent is None else 0),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if with_ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                parent.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    cert = builder.sign(SignerKey(parent.signer if parent else signer), hashes.SHA256())
    return CA(cert, key, signer)


@functools.cache
def shared_pki() -> Pki:
    """One PKI for the whole test session (RSA key generation is the slow part)."""
    root = make_ca("Shirushi Test Root")
    return Pki(root=root, issuing=make_ca("Shirushi Test Issuing CA", parent=root, serial=2))


def reference_crl(
    *,
    issuer: CA,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    entries: Iterable[EntryLike],
) -> bytes:
    """The same CRL made by pyca/cryptography's builder, signed by the same signer."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if entry.reason != "unspecified":
            revoked = revoked.add_extension(x509.CRLReason(x509.ReasonFlags(entry.reason)), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(SignerKey(issuer.signer), hashes.SHA256()).public_bytes(Encoding.DER)


def pem(der: bytes, label: str) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"".join(
        [f"-----BEGIN {label}-----\n".encode(), *(line + b"\n" for line in lines), f"-----END {label}-----\n".encode()]
    )


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    assert exe is not None, "openssl is not installed"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)


def lint_crl(path: Path, *, arl: bool = False) -> subprocess.CompletedProcess[str]:
    """pkilint's CRL linter with the BR profile; exit code = findings at WARNING or above."""
    return subprocess.run(
        [str(LINT_CRL), "lint", "-t", "ARL" if arl else "CRL", "-p", "BR", "-s", "WARNING", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
