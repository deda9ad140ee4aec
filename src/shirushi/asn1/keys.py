"""Public-key identities: the subjectPublicKey bits and every identity derived from them. Pure.

The same bits feed the OCSP CertID issuerKeyHash (RFC 6960 4.1.1), the cache's issuer id, the
SKI/AKI of our certificates (RFC 5280 4.2.1.2 method 1) and the CKA_ID of keys in the HSM; the
SHA-256 of the whole SubjectPublicKeyInfo is a subscriber key's identity in the store (and on the
block list). They are computed here only.
"""

from __future__ import annotations

import hashlib
from typing import NewType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from shirushi.asn1 import der

# Short stable id of an issuing CA (see `issuer_id`): the issuers table key and the cache key part.
IssuerId = NewType("IssuerId", str)


def _spki(key: PublicKeyTypes | x509.Certificate) -> bytes:
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_bits(key: PublicKeyTypes | x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value (without tag, length and unused-bits octet)."""
    spki = _spki(key)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    # The DER comes from pyca, so it is well formed; walk it rather than parse it.
    _, pos, _ = der.read_tlv(spki, 0)  # inside the outer SEQUENCE
    _, _, pos = der.read_tlv(spki, pos)  # past AlgorithmIdentifier
    tag, start, _ = der.read_tlv(spki, pos)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return spki[start + 1 :]  # drop the unused-bits octet (always 0 for keys)


def key_identifier(key: PublicKeyTypes | x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey bits: RFC 5280 4.2.1.2 method (1), 160 bits."""
    return hashlib.sha1(public_key_bits(key)).digest()


def issuer_id(key: PublicKeyTypes | x509.Certificate) -> IssuerId:
    """Short stable id of an issuer: the first 16 hex digits of SHA-256 of its subjectPublicKey.

    The input is the same as the CertID issuerKeyHash's (RFC 6960 4.1.1), so a re-keyed CA gets a
    new id.
    """
    return IssuerId(hashlib.sha256(public_key_bits(key)).hexdigest()[:16])


def certid_hashes(issuer: x509.Certificate, alg: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of `issuer` with hash `alg` (RFC 6960 4.1.1)."""
    name = issuer.subject.public_bytes()
    return hashlib.new(alg, name).digest(), hashlib.new(alg, public_key_bits(issuer)).digest()


def spki_sha256(key: PublicKeyTypes | x509.Certificate) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: a subscriber key's identity in the store."""
    return hashlib.sha256(_spki(key)).hexdigest()
