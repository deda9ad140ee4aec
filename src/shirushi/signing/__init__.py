"""The signing seam: the only code that touches private keys.

A `Signer` signs to-be-signed bytes (TBSCertificate, TBSCertList, ResponseData) with its one key
and tells its public key: sha256WithRSAEncryption (RSASSA-PKCS1-v1_5 over SHA-256) for an RSA key,
ecdsa-with-SHA256 (a DER Ecdsa-Sig-Value, RFC 5758 3.2) for a P-256 key. The CA keys are RSA (the
policy's profile); the delegated OCSP signer may be either (`ocsp.signer_key`). Nothing else
crosses the seam, so a file key and an HSM key are interchangeable.

`signer_key()` adapts a Signer to pyca/cryptography's private key classes, whose certificate, CRL
and OCSP builders then call `Signer.sign()` with the TBS bytes. No I/O here.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from shirushi.errors import SignerError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Key types a KeyStore makes (`ocsp.signer_key`); the CA's own keys are always "rsa-2048".
RSA_2048, ECDSA_P256 = "rsa-2048", "ecdsa-p256"
KEY_TYPES = (RSA_2048, ECDSA_P256)


def key_type_of(public: PublicKey) -> str:
    """The key type name of a public key; SignerError for anything this CA does not sign with."""
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048:
        return RSA_2048
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return ECDSA_P256
    raise SignerError("only RSA (2048 bits or more) and ECDSA P-256 keys can sign")


class Signer(Protocol):
    """Signs TBS bytes with one key: RSA with sha256WithRSAEncryption, or P-256 with ecdsa-with-SHA256."""

    @property
    def label(self) -> str:
        """A name for messages and audit records (never key material)."""
        ...

    def public_key(self) -> PublicKey: ...

    def sign(self, tbs: bytes) -> bytes:
        """Return the signature over SHA-256(tbs): PKCS#1 v1.5 (RSA) or DER Ecdsa-Sig-Value (ECDSA)."""
        ...


class KeyStore(Protocol):
    """Creates and opens the CA's keys in one backend (files or a PKCS#11 token)."""

    def exists(self, name: str) -> bool: ...

    def generate(self, name: str, key_type: str = RSA_2048) -> Signer:
        """Create key `name` of `key_type` (KEY_TYPES); refuses (ConflictError) when it exists already."""
        ...

    def open(self, name: str) -> Signer:
        """Open existing key `name` (StateError when missing)."""
        ...


def verify(public: PublicKey, signature: bytes, data: bytes) -> None:
    """Check a signature made the way `Signer.sign` makes them; InvalidSignature if it is not."""
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def rsa_public(signer: Signer) -> rsa.RSAPublicKey:
    """The public key of a CA signer, which is RSA by the policy's profile (7.1.3)."""
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise SignerError(f"{signer.label} is not an RSA key; the CA's own keys are RSA")
    return public


def signer_key(signer: Signer) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """The pyca private key object through which builders sign with `signer`."""
    if isinstance(signer.public_key(), ec.EllipticCurvePublicKey):
        return ECSignerKey(signer)
    return SignerKey(signer)


class SignerKey(rsa.RSAPrivateKey):
    """An `RSAPrivateKey` whose only working operation is `sign()`, done by a Signer.

    pyca/cryptography's x509 builders call `sign(tbs, PKCS1v15(), SHA256())`; anything else is a
    programming error and is refused loudly.
    """

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._public = rsa_public(signer)

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        if not isinstance(padding, _PKCS1v15) or not isinstance(algorithm, hashes.SHA256):
            raise SignerError("only sha256WithRSAEncryption (PKCS#1 v1.5, SHA-256) is supported")
        return self._signer.sign(data)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        raise SignerError("CA keys are for signing only")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise SignerError("CA private keys are never exported")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise SignerError("CA private keys are never exported")

    def __copy__(self) -> SignerKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SignerKey:
        return self


class ECSignerKey(ec.EllipticCurvePrivateKey):
    """An `EllipticCurvePrivateKey` whose only working operation is `sign()`, done by a Signer.

    Builders call `sign(tbs, ECDSA(SHA256()))`; anything else is refused loudly.
    """

    def __init__(self, signer: Signer) -> None:
        public = signer.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SignerError(f"{signer.label} is not an ECDSA key")
        self._signer = signer
        self._public = public

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: Any) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(
            signature_algorithm.algorithm, hashes.SHA256
        ):
            raise SignerError("only ecdsa-with-SHA256 is supported")
        return self._signer.sign(bytes(data))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise SignerError("CA keys are for signing only")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise SignerError("CA private keys are never exported")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise SignerError("CA private keys are never exported")

    def __copy__(self) -> ECSignerKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ECSignerKey:
        return self


_PKCS1v15 = padding.PKCS1v15
