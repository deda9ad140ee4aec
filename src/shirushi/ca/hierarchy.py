"""The CA hierarchy's certificates: their names, their files in `{data_dir}/certs`, and the set in use.

Public material only (the keys stay behind the KeyStore seam). Reads and writes those files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.asn1.keys import IssuerId, issuer_id
from shirushi.ca import profiles
from shirushi.config import Settings
from shirushi.errors import StateError
from shirushi.files import write_atomic
from shirushi.layout import Layout

if TYPE_CHECKING:
    from shirushi.signing import Signer

ROOT, ISSUING, OCSP_SIGNER = "root", "issuing-ca", "ocsp-signer"


def ocsp_signer_key(settings: Settings) -> str:
    """The KeyStore name of the delegated OCSP signer's key of the configured type
    (`ocsp.signer_key`): "ocsp-signer" for RSA, as before there was a choice, else suffixed."""
    key_type = settings.ocsp.signer_key
    return OCSP_SIGNER if key_type == "rsa-2048" else f"{OCSP_SIGNER}-{key_type}"


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """The CA certificates currently in use."""

    root: x509.Certificate
    issuing: x509.Certificate
    ocsp_signer: x509.Certificate

    @property
    def issuing_id(self) -> IssuerId:
        return issuer_id(self.issuing)


class CertificatePaths:
    """Where the CA certificates live in data_dir (public material only)."""

    def __init__(self, data_dir: Path) -> None:
        self.layout = Layout(data_dir)
        self.directory = self.layout.certs

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    @property
    def issuers_bundle(self) -> Path:
        """Issuing CA certificates served by the responder (`ocsp.issuers` default)."""
        return self.layout.issuers_bundle

    def load(self, name: str) -> x509.Certificate | None:
        try:
            return x509.load_pem_x509_certificate(self.cert(name).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, name: str, cert: x509.Certificate) -> None:
        write_atomic(self.cert(name), pem(cert).encode())

    def stamp(self) -> tuple[tuple[int, int, int], ...] | None:
        """Identity of the current CA certificate files (None when one is missing)."""
        try:
            stats = [self.cert(n).stat() for n in (ROOT, ISSUING, OCSP_SIGNER)]
        except FileNotFoundError:
            return None
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def load_hierarchy(settings: Settings) -> Hierarchy:
    paths = CertificatePaths(settings.data_path)
    root, issuing, signer = (paths.load(n) for n in (ROOT, ISSUING, OCSP_SIGNER))
    if root is None or issuing is None or signer is None:
        raise StateError(f"the CA is not initialised in {settings.data_path}: run `shirushi init`")
    return Hierarchy(root, issuing, signer)


def check_pair(cert: x509.Certificate, signer: Signer, name: str) -> None:
    """Refuse a certificate whose public key is not the key the backend holds under `name`."""
    if cert.public_key() != signer.public_key():
        raise StateError(f"the {name} certificate does not match the {name} key in the key backend")


def certificate_urls(settings: Settings) -> profiles.URLs:
    """The service URLs written into the certificates the CA signs."""
    repository = settings.repository.url
    return profiles.URLs(
        ocsp=settings.ocsp.url,
        repository=repository if repository.endswith("/") else repository + "/",
        cps=settings.ca.cps_uri,
    )
