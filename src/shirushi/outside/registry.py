"""Registering an outside CA and its delegated OCSP signer. Does I/O: store, key backend, files
under `{data_dir}/certs/outside`, and Redis (the issuer list responders follow).

Responders learn of outside CAs from the Redis hash `ISSUERS_KEY` (name -> PEM certificate),
which `issuer add` writes and `serve` writes again at start (a Redis that lost its data), so a
responder on another machine picks up a new CA without a restart (responder/reload.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi.asn1.keys import issuer_id
from shirushi.ca.hierarchy import der, pem
from shirushi.cache.records import ISSUERS_KEY
from shirushi.config import Settings
from shirushi.errors import InputError, NotFoundError, PolicyError, ServiceError, StateError
from shirushi.files import write_atomic
from shirushi.outside import checks
from shirushi.signing import KeyStore, signer_key
from shirushi.store import Store
from shirushi.store import outside as records
from shirushi.store.records import IssuerRow

if TYPE_CHECKING:
    from shirushi.presign.presigner import SigningContext


def signer_key_name(name: str) -> str:
    """The delegated signer key of outside CA `name` in the key backend."""
    return f"outside-{name}-ocsp"


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InputError(f"{what} is not a PEM or DER certificate") from None


def outside_issuer(store: Store, name: str) -> IssuerRow:
    row = store.issuer(name)
    if row is None or not row.outside:
        raise NotFoundError(f"no outside CA named {name!r}: register it with `shirushi issuer add {name} --cert FILE`")
    return row


def add(settings: Settings, store: Store, client: redis.Redis, name: str, data: bytes, now: dt.datetime) -> list[str]:
    """`issuer add`: check and record the CA certificate; returns warnings."""
    problem = checks.check_name(name)
    if problem:
        raise InputError(problem)
    cert = load_certificate(data, "--cert")
    found = checks.check_ca(cert)
    if found.errors:
        raise PolicyError(f"{name}: {'; '.join(found.errors)}")
    ident = issuer_id(cert)
    same = [row for row in store.issuers() if row.id == ident]
    if same and (same[0].name != name or same[0].certificate != der(cert)):
        raise PolicyError(f"{name}: this CA's key is registered already, as {same[0].name}")
    if not same:  # the same again: only tell the responders again (a Redis failure last time)
        records.add_issuer(store, ident, name, cert.subject.rfc4514_string(), der(cert), now)
    write_atomic(settings.layout.outside_ca(name), pem(cert).encode())
    publish(client, {name: pem(cert)})
    return list(found.warnings)


def publish(client: redis.Redis, certificates: dict[str, str]) -> None:
    """Tell responders about outside CAs (see the module docstring)."""
    if not certificates:
        return
    try:
        client.hset(ISSUERS_KEY, mapping=certificates)  # type: ignore[arg-type]
    except redis.RedisError as exc:
        raise ServiceError(f"Redis write failed (responders learn of the CA from it): {exc}") from None


def publish_all(settings: Settings, store: Store, client: redis.Redis) -> None:
    publish(
        client,
        {row.name: pem(x509.load_der_x509_certificate(row.certificate)) for row in records.outside_issuers(store)},
    )


def signer_csr(store: Store, keys: KeyStore, name: str) -> bytes:
    """`issuer signer-csr`: the signer key (made once in the key backend) and a PEM CSR for it.

    The CSR asks for what RFC 6960 4.2.2.2 needs (the outside CA's own configuration decides
    what it copies): a CN (easy-rsa's signing policy requires one), id-kp-OCSPSigning,
    id-pkix-ocsp-nocheck, a critical keyUsage digitalSignature.
    """
    from cryptography.hazmat.primitives import serialization

    row = outside_issuer(store, name)
    key = signer_key_name(name)
    signer = keys.open(key) if keys.exists(key) else keys.generate(key)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{row.name} OCSP Responder")]))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    )
    csr = builder.sign(signer_key(signer), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def install_signer(
    settings: Settings, store: Store, keys: KeyStore, name: str, data: bytes, now: dt.datetime
) -> tuple[x509.Certificate, list[str]]:
    """`issuer signer-cert`: check and install the certificate; returns it and the warnings."""
    row = outside_issuer(store, name)
    key = signer_key_name(name)
    if not keys.exists(key):
        raise StateError(f"{name} has no signer key yet: run `shirushi issuer signer-csr {name} --out FILE` first")
    cert = load_certificate(data, "--cert")
    ca = x509.load_der_x509_certificate(row.certificate)
    found = checks.check_signer(cert, ca, keys.open(key).public_key(), now, settings.presign.validity)
    if found.errors:
        raise PolicyError(f"{name} signer certificate refused: {'; '.join(found.errors)}; nothing changed")
    write_atomic(settings.layout.outside_signer(name), pem(cert).encode())
    return cert, list(found.warnings)


@dataclasses.dataclass(frozen=True)
class OutsideCA:
    """An outside CA as the presigner needs it (None signer: none installed yet)."""

    row: IssuerRow
    certificate: x509.Certificate
    signer: x509.Certificate | None


def load(settings: Settings, row: IssuerRow) -> OutsideCA:
    path: Path = settings.layout.outside_signer(row.name)
    try:
        signer = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        signer = None
    return OutsideCA(row, x509.load_der_x509_certificate(row.certificate), signer)


def renewal_due(settings: Settings, store: Store, keys: KeyStore, now: dt.datetime) -> list[str]:
    """Outside CAs whose signer certificate ends within `ca.ocsp_signer_renew_before`: a fresh CSR
    is written next to it (`{data_dir}/certs/outside/NAME-ocsp.csr`) for that CA to sign, since
    only it can. Returns one warning per CA concerned."""
    warnings = []
    for row in records.outside_issuers(store):
        ca = load(settings, row)
        if ca.signer is None or ca.signer.not_valid_after_utc - now > settings.ca.ocsp_signer_renew_before:
            continue
        csr = settings.layout.outside / f"{row.name}-ocsp.csr"
        write_atomic(csr, signer_csr(store, keys, row.name))
        warnings.append(
            f"the {row.name} OCSP signer certificate ends at {ca.signer.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}: "
            f"have {row.name} sign {csr}, then `shirushi issuer signer-cert {row.name} --cert FILE`"
        )
    return warnings


def signing_context(settings: Settings, ca: OutsideCA) -> SigningContext:
    from shirushi.presign.presigner import SigningContext

    if ca.signer is None:
        raise StateError(f"{ca.row.name} has no signer certificate: run `shirushi issuer signer-cert {ca.row.name}`")
    return SigningContext.create(ca.certificate, ca.signer, settings)
