"""The signing seam: the only code that touches private keys.

A `Signer` signs to-be-signed bytes (TBSCertificate, TBSCertList, ResponseData) with
sha256WithRSAEncryption (RSASSA-PKCS1-v1_5 over SHA-256) and tells its public key. Nothing else
crosses the seam, so a file key and an HSM key are interchangeable.

`SignerKey` adapts a Signer to pyca/cryptography's `RSAPrivateKey`, whose certificate, CRL and
OCSP builders then call `Signer.sign()` with the TBS bytes. No I/O here.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shirushi.errors import SignerError


class Signer(Protocol):
    """Signs TBS bytes with one RSA key, sha256WithRSAEncryption."""

    @property
    def label(self) -> str:
        """A name for messages and audit records (never key material)."""
        ...

    def public_key(self) -> rsa.RSAPublicKey: ...

    def sign(self, tbs: bytes) -> bytes:
        """Return the PKCS#1 v1.5 signature over SHA-256(tbs)."""
        ...


class KeyStore(Protocol):
    """Creates and opens the CA's keys in one backend (files or a PKCS#11 token)."""

    def exists(self, name: str) -> bool: ...

    def generate(self, name: str, bits: int = 2048) -> Signer:
        """Create key `name`; refuses (ConflictError) when it exists already."""
        ...

    def open(self, name: str) -> Signer:
        """Open existing key `name` (StateError when missing)."""
        ...


class SignerKey(rsa.RSAPrivateKey):
    """An `RSAPrivateKey` whose only working operation is `sign()`, done by a Signer.

    pyca/cryptography's x509 builders call `sign(tbs, PKCS1v15(), SHA256())`; anything else is a
    programming error and is refused loudly.
    """

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._public = signer.public_key()

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


_PKCS1v15 = padding.PKCS1v15
