"""Checks on an outside CA's certificate and on the delegated OCSP signer certificate it issued.
Pure: certificates and time in, findings out.

RFC 6960 4.2.2.2: a delegated responder certificate is issued directly by the CA it answers for
and carries id-kp-OCSPSigning; 4.2.2.2.1: id-pkix-ocsp-nocheck tells clients not to check its own
status (recommended, reported when missing). Outside CAs have their own profiles (easy-rsa's
default lifetime is 825 days), so a lifetime beyond this policy's year, or a keyUsage that is not
critical, is a warning rather than a refusal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
RESERVED = frozenset({"issuing-ca", "root", "ocsp-signer", "all"})
POLICY_SIGNER_DAYS = 365  # policy table 7.1-2, the delegated signer of Shirushi's own CA


@dataclasses.dataclass(frozen=True)
class Findings:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def check_name(name: str) -> str | None:
    """Why `name` cannot name an outside CA, or None."""
    if not NAME.match(name):
        return f"issuer name {name!r} must be 1-48 letters, digits, '.', '_' or '-'"
    if name in RESERVED:
        return f"issuer name {name!r} is reserved for Shirushi's own CA"
    return None


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def check_ca(cert: x509.Certificate) -> Findings:
    """A CA certificate (RFC 5280 4.2.1.9) that may sign certificates (4.2.1.3)."""
    errors: list[str] = []
    warnings: list[str] = []
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:  # type: ignore[attr-defined]
        errors.append("not a CA certificate (basicConstraints cA is not set)")
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None:
        if not ku.value.key_cert_sign:  # type: ignore[attr-defined]
            errors.append("its keyUsage lacks keyCertSign")
        if not ku.value.crl_sign:  # type: ignore[attr-defined]
            warnings.append("its keyUsage lacks cRLSign: its CRLs cannot be imported")
    return Findings(tuple(errors), tuple(warnings))


def check_signer(
    cert: x509.Certificate, ca: x509.Certificate, key: object, now: dt.datetime, min_left: dt.timedelta
) -> Findings:
    """The delegated signer certificate for `ca`, certifying `key` (our public key)."""
    errors: list[str] = []
    warnings: list[str] = []
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no message
        errors.append(f"not issued by this CA ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku.value:  # type: ignore[operator]
        errors.append("no extendedKeyUsage id-kp-OCSPSigning (RFC 6960 4.2.2.2)")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_bytes(*spki):  # type: ignore[attr-defined]
        errors.append("it certifies another key than this issuer's signer key (made by `issuer signer-csr`)")
    if now < cert.not_valid_before_utc:
        errors.append(f"not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
    elif cert.not_valid_after_utc <= now:
        errors.append(f"expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    elif cert.not_valid_after_utc - now < min_left:
        errors.append(
            f"ends at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, sooner than one response's validity "
            "(presign.validity): no response may outlive it"
        )
    if _ext(cert, x509.OCSPNoCheck) is None:
        warnings.append("no id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): clients may try to check the signer's status")
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None:
        if not ku.value.digital_signature:  # type: ignore[attr-defined]
            errors.append("its keyUsage lacks digitalSignature")
        elif not ku.critical:
            warnings.append("its keyUsage is not critical (policy table 7.1-2 marks it critical)")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if lifetime > dt.timedelta(days=POLICY_SIGNER_DAYS):
        warnings.append(f"lifetime {lifetime.days} days is longer than the policy's {POLICY_SIGNER_DAYS}")
    return Findings(tuple(errors), tuple(warnings))
