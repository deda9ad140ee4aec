"""File key backend: RSA or ECDSA P-256 keys as PKCS#8 PEM files (mode 0600), optionally passphrase-encrypted.

For demos and tests; production keys belong in an HSM (policy 6.2.1, see the `pkcs11` package).
Reads and writes key files under one directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from shirushi.errors import ConflictError, SignerError, StateError
from shirushi.metrics.registry import count_signatures
from shirushi.signing import ECDSA_P256, KEY_TYPES, RSA_2048, PublicKey, key_type_of, verify

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class SoftwareSigner:
    """Signs with an in-memory RSA or P-256 key loaded from a file."""

    def __init__(self, key: PrivateKey, label: str) -> None:
        self._key = key
        self._label = label
        # The key's name (file stem) labels the signature count; the path would be unbounded.
        self._counter = count_signatures(label.rsplit("/", 1)[-1].removesuffix(".key"))

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, tbs: bytes) -> bytes:
        signature = _sign(self._key, tbs)
        self._counter.inc()
        return signature


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _new_key(key_type: str) -> PrivateKey:
    if key_type == RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    raise SignerError(f"key type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")


class FileKeyStore:
    """Keys named `<name>.key` in `directory`."""

    def __init__(self, directory: Path, passphrase: bytes | None = None) -> None:
        self.directory = directory
        self._passphrase = passphrase

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def generate(self, name: str, key_type: str = RSA_2048) -> SoftwareSigner:
        path = self._path(name)
        key = _new_key(key_type)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        # O_EXCL: never overwrite an existing key, even if two `init`s race.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConflictError(f"key {path} exists already; refusing to overwrite it") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return SoftwareSigner(key, f"file:{path}")

    def open(self, name: str) -> SoftwareSigner:
        path = self._path(name)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise StateError(f"key {path} does not exist; run `shirushi init` first") from None
        except OSError as exc:
            raise SignerError(f"cannot read key {path}: {exc.strerror}") from None
        try:
            # OpenSSL's full RSA key check costs 0.1 s to 0.3 s per key (every CLI command pays
            # it); these files are the CA's own. A sign-and-verify below catches a key whose
            # parts do not match, which is what the check guards against.
            key = serialization.load_pem_private_key(
                pem, password=self._passphrase, unsafe_skip_rsa_key_validation=True
            )
        except TypeError:
            raise SignerError(
                f"key {path} is encrypted: set ca.key_passphrase_env to the variable holding its passphrase"
            ) from None
        except ValueError:
            raise SignerError(f"cannot load key {path}: wrong passphrase or not a PKCS#8 key") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SignerError(f"key {path} is neither an RSA nor an ECDSA key")
        try:
            key_type_of(key.public_key())
        except SignerError as exc:
            raise SignerError(f"key {path}: {exc}") from None
        _self_test(key, path)
        return SoftwareSigner(key, f"file:{path}")


def _self_test(key: PrivateKey, path: Path) -> None:
    """Refuse a key whose signatures do not verify under its own public key (a damaged file)."""
    message = b"shirushi key self-test"
    try:
        verify(key.public_key(), _sign(key, message), message)
    except (InvalidSignature, ValueError):
        raise SignerError(f"key {path} is damaged: its signatures do not verify") from None
