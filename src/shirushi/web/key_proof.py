"""The proof that a key is compromised, as the key-compromise report gives it (policy 4.9.12).

Pure: parses and checks the report's fields; no I/O.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
    raise InputError("give 'private_key' (PEM) or 'csr' (PEM, signed by the compromised key)")
