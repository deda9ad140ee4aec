"""The delegated signer of an outside CA, in process: the CSR asks for what RFC 6960 4.2.2.2
needs, the certificate is checked against the key made for it, and a signer near its end is
reported with a fresh CSR ready (the outside CA must sign it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi.asn1.keys import issuer_id
from shirushi.config import load
from shirushi.errors import PolicyError, StateError
from shirushi.outside import registry
from shirushi.signing.software import FileKeyStore
from shirushi.store import Store
from shirushi.store import outside as records

UTC = dt.UTC


def test_signer_csr_install_and_renewal_warning(tmp_path: Path) -> None:
    settings = load(None, {"SHIRUSHI_DATA_DIR": str(tmp_path / "data")})
    store = Store.open(settings.database_url)
    keys = FileKeyStore(settings.layout.keys)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside CA")])
    now = dt.datetime.now(UTC).replace(microsecond=0)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    records.add_issuer(store, issuer_id(ca), "corp", "CN=Outside CA", ca.public_bytes(serialization.Encoding.DER), now)
    with pytest.raises(StateError):
        registry.install_signer(settings, store, keys, "corp", b"-----BEGIN CERTIFICATE-----", now)

    csr = x509.load_pem_x509_csr(registry.signer_csr(store, keys, "corp"))
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "corp OCSP Responder"
    assert ExtendedKeyUsageOID.OCSP_SIGNING in csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Asked again, the same key (a renewal CSR, or a lost one).
    again = x509.load_pem_x509_csr(registry.signer_csr(store, keys, "corp"))
    assert again.public_key() == csr.public_key()

    def signer(days: int, eku: bool = True) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(name)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=days))
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    with pytest.raises(PolicyError, match="OCSPSigning"):
        registry.install_signer(settings, store, keys, "corp", signer(90, eku=False), now)
    assert not settings.layout.outside_signer("corp").exists()
    cert, warnings = registry.install_signer(settings, store, keys, "corp", signer(400), now)
    assert any("400 days" in w for w in warnings) and any("nocheck" in w for w in warnings)
    assert registry.renewal_due(settings, store, keys, now) == []
    # Within ca.ocsp_signer_renew_before of its end: a warning and a fresh CSR for the CA.
    later = cert.not_valid_after_utc - dt.timedelta(days=10)
    (warning,) = registry.renewal_due(settings, store, keys, later)
    assert "corp OCSP signer certificate ends" in warning
    renewal = x509.load_pem_x509_csr((settings.layout.outside / "corp-ocsp.csr").read_bytes())
    assert renewal.public_key() == csr.public_key()
    store.close()
