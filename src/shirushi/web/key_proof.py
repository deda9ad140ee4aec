"""The proof that a key is compromised, as the key-compromise report gives it (policy 4.9.12):
the private key, a CSR signed by it naming the compromise, or a signature over a challenge this
CA chose (the challenge's life and single use are `web.key_challenge`'s).

Pure: parses and checks the report's fields; no I/O.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from shirushi.ca.csr import SubscriberKey, load_csr
from shirushi.errors import InputError, PolicyError
from shirushi.web.json_io import string_field

# The largest RSA key the CA certifies is bounded only by what subscribers send; proofs for
# keys beyond this are refused before the (costly) private-key validation.
MAX_PROOF_KEY_BITS = 8192


def compromise_proof(data: dict[str, Any]) -> SubscriberKey:
    """The public key proven compromised (policy 4.9.12): the private key itself, or a CSR
    signed by it whose subject says it reports a compromise."""
    if "private_key" in data:
        text = string_field(data, "private_key")
        assert text is not None
        try:
            # Size first, validation after: an oversized key is refused without the work.
            unchecked = serialization.load_pem_private_key(
                text.encode(), password=None, unsafe_skip_rsa_key_validation=True
            )
            if isinstance(unchecked, rsa.RSAPrivateKey) and unchecked.key_size > MAX_PROOF_KEY_BITS:
                raise InputError(f"private_key is over {MAX_PROOF_KEY_BITS} bits")
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise InputError("private_key is not a valid unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise InputError("only RSA and ECDSA keys are certified by this CA")
        return key.public_key()
    if "csr" in data:
        text = string_field(data, "csr")
        assert text is not None
        csr = load_csr(text.encode())
        if not csr.is_signature_valid:
            raise InputError("the CSR's signature does not verify")
        cn = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if not cn or "compromise" not in str(cn[0].value).lower():
            raise PolicyError("the CSR's subject CN must state the key compromise, e.g. 'Proof of Key Compromise'")
        public_key = csr.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InputError("only RSA and ECDSA keys are certified by this CA")
        return public_key
    raise InputError(
        "give 'private_key' (PEM), 'csr' (PEM, signed by the compromised key), or 'public_key', 'challenge' "
        "and 'signature' (a challenge from POST /api/v1/key-compromise/challenge, signed by the key)"
    )


# Challenges (policy 4.9.12, third proof): a fixed prefix, so a signature made for us can be
# nothing else the key holder meant, then random bytes.
CHALLENGE_PREFIX = b"shirushi key-compromise challenge\n"
CHALLENGE_RANDOM_BYTES = 32
MAX_SIGNATURE_BYTES = 2048


class ProofRefused(PolicyError):
    """Well-formed proof fields that do not prove the compromise (bad signature, stale challenge)."""

    http_status = 422
    code = "proof_refused"


def load_public_key(text: str) -> SubscriberKey:
    """A PEM public key ("PUBLIC KEY", SubjectPublicKeyInfo) of a type this CA certifies."""
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError):
        raise InputError("public_key is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size > MAX_PROOF_KEY_BITS:
        raise InputError(f"public_key is over {MAX_PROOF_KEY_BITS} bits")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InputError("only RSA and ECDSA keys are certified by this CA")
    return key


def base64_field(data: dict[str, Any], key: str, limit: int) -> bytes:
    text = string_field(data, key)
    assert text is not None
    if len(text) > limit * 4 // 3 + 4:
        raise InputError(f"field {key!r} is over {limit} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise InputError(f"field {key!r} is not base64") from None


def check_challenge_signature(key: SubscriberKey, challenge: bytes, signature: bytes) -> None:
    """The signature over the challenge bytes: RSA PKCS#1 v1.5 or ECDSA (DER), with SHA-256."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ProofRefused(
            "the signature does not verify over the challenge with that key "
            "(RSA PKCS#1 v1.5 or ECDSA, SHA-256, over the decoded challenge bytes)"
        ) from None
