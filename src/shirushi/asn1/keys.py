"""Public-key identities: the subjectPublicKey bits and the key identifier derived from them. Pure.

The same bytes feed the OCSP CertID issuerKeyHash (RFC 6960 4.1.1), the cache's issuer id, the
SKI/AKI of our certificates (RFC 5280 4.2.1.2 method 1) and the CKA_ID of keys in the HSM, so they
are computed in one place.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


def public_key_bits(key: PublicKeyTypes | x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value (without tag, length and unused-bits octet)."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    # The DER comes from pyca, so it is well formed; walk it rather than parse it.
    pos = _content_start(spki, 0)  # inside the outer SEQUENCE
    pos = _skip(spki, pos)  # past AlgorithmIdentifier
    if spki[pos] != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    start = _content_start(spki, pos)
    return spki[start + 1 :]  # drop the unused-bits octet (always 0 for keys)


def key_identifier(key: PublicKeyTypes | x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey bits: RFC 5280 4.2.1.2 method (1), 160 bits."""
    return hashlib.sha1(public_key_bits(key)).digest()


def _content_start(der: bytes, pos: int) -> int:
    first = der[pos + 1]
    return pos + 2 + (first & 0x7F if first & 0x80 else 0)


def _skip(der: bytes, pos: int) -> int:
    first = der[pos + 1]
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(der[pos + 2 : pos + 2 + count], "big")
        return pos + 2 + count + length
    return pos + 2 + first
