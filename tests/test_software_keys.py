"""File keys load without OpenSSL's slow full check, and a damaged key is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shirushi.errors import SignerError
from shirushi.signing.software import FileKeyStore


def write(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def test_a_good_key_signs_what_its_public_key_verifies(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(tmp_path / "good.key", key)
    signer = FileKeyStore(tmp_path).open("good")
    signature = signer.sign(b"tbs")
    key.public_key().verify(signature, b"tbs", padding.PKCS1v15(), hashes.SHA256())
    assert signer.public_key() == key.public_key()


def test_a_key_whose_signatures_fail_is_refused(tmp_path: Path) -> None:
    n = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    damaged = rsa.RSAPrivateNumbers(n.p, n.q, n.d + 2, n.dmp1 + 2, n.dmq1 + 2, n.iqmp, n.public_numbers)
    write(tmp_path / "bad.key", damaged.private_key(unsafe_skip_rsa_key_validation=True))
    with pytest.raises(SignerError, match=r"bad\.key is damaged"):
        FileKeyStore(tmp_path).open("bad")
