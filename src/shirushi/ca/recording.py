"""Turns a signed certificate into its CertificateRecord and stores it. Does I/O through the Store."""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shirushi.asn1.keys import spki_sha256
from shirushi.ca.hierarchy import der
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord, Store

log = logging.getLogger("shirushi.ca")


def record_certificate(
    store: Store,
    cert: x509.Certificate,
    issuer: str,
    *,
    kind: str,
    now: dt.datetime,
    audit: dict[str, object],
    presign: bool = True,
    crl_shard: int = 0,
) -> CertificateRecord:
    """Store `cert` (issued by `issuer`) with its audit fields and log it; ConflictError on a reused serial."""
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    record = CertificateRecord(
        issuer_id=issuer,
        serial=cert.serial_number,
        der=der(cert),
        subject=cert.subject.rfc4514_string(),
        dns_names=dns,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spki_sha256=spki_sha256(key),
        kind=kind,
        crl_shard=crl_shard,
    )
    store.add_certificate(record, at=now, audit={"kind": kind, **audit}, presign=presign)
    log.info(
        "certificate issued",
        extra={
            "serial": serial_text(record.serial),
            "kind": kind,
            "dns_names": list(dns),
            "not_after": record.not_after,
        },
    )
    return record
