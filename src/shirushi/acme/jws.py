"""Flattened JWS (RFC 7515) as ACME uses it (RFC 8555 6.2): parse, check, verify. Pure.

Accepted algorithms: RS256 (RSA >= 2048 bits), ES256 (P-256), ES384 (P-384). The JWK
thumbprint is RFC 7638's. Errors are `Problem`s with the RFC's types, never exceptions of the
crypto library.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shirushi.acme.problems import Problem

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
CURVES: dict[str, tuple[type[ec.EllipticCurve], str, int]] = {
    "P-256": (ec.SECP256R1, "ES256", 32),
    "P-384": (ec.SECP384R1, "ES384", 48),
}
ALGORITHMS = ("RS256", "ES256", "ES384")


def b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise Problem("malformed", f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Problem("malformed", f"{what} is not base64url") from None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclasses.dataclass(frozen=True)
class Signed:
    protected: dict[str, Any]
    payload: bytes  # b"" for POST-as-GET
    signing_input: bytes
    signature: bytes

    @property
    def payload_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise Problem("malformed", "the payload is not JSON") from None
        if not isinstance(data, dict):
            raise Problem("malformed", "the payload is not a JSON object")
        return data


def parse(body: bytes) -> Signed:
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem("malformed", "the request body is not JSON") from None
    if not isinstance(outer, dict) or set(outer) - {"protected", "payload", "signature"} or len(outer) != 3:
        raise Problem("malformed", "expected a flattened JWS with protected, payload and signature")
    protected_raw = outer["protected"]
    header_bytes = b64decode(protected_raw, "protected")
    try:
        protected = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError):
        raise Problem("malformed", "the protected header is not JSON") from None
    if not isinstance(protected, dict):
        raise Problem("malformed", "the protected header is not a JSON object")
    payload = b64decode(outer["payload"], "payload") if outer["payload"] != "" else b""
    signature = b64decode(outer["signature"], "signature")
    signing_input = f"{protected_raw}.{outer['payload']}".encode("ascii")
    return Signed(protected, payload, signing_input, signature)


def public_key(jwk: Any) -> PublicKey:
    if not isinstance(jwk, dict):
        raise Problem("malformed", "jwk is not a JSON object")
    kty = jwk.get("kty")
    if kty == "RSA":
        n = int.from_bytes(b64decode(jwk.get("n"), "jwk n"), "big")
        e = int.from_bytes(b64decode(jwk.get("e"), "jwk e"), "big")
        if n.bit_length() < 2048 or e < 3 or e % 2 == 0:
            raise Problem("badPublicKey", "RSA account keys must be at least 2048 bits with an odd exponent")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise Problem("badPublicKey", "not a valid RSA public key") from None
    if kty == "EC":
        curve = CURVES.get(jwk.get("crv", ""))
        if curve is None:
            raise Problem("badPublicKey", "EC account keys must be on P-256 or P-384")
        x = int.from_bytes(b64decode(jwk.get("x"), "jwk x"), "big")
        y = int.from_bytes(b64decode(jwk.get("y"), "jwk y"), "big")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, curve[0]()).public_key()
        except ValueError:
            raise Problem("badPublicKey", "the EC point is not on the curve") from None
    raise Problem("badPublicKey", f"unsupported key type {kty!r}")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order."""
    members = ("e", "kty", "n") if jwk.get("kty") == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return b64encode(hashlib.sha256(canonical.encode()).digest())


def jwk_of(key: PublicKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": b64encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
    size = (key.curve.key_size + 7) // 8
    crv = "P-256" if key.curve.key_size == 256 else "P-384"
    en = key.public_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64encode(en.x.to_bytes(size, "big")),
        "y": b64encode(en.y.to_bytes(size, "big")),
    }


def verify(signed: Signed, key: PublicKey) -> None:
    alg = signed.protected.get("alg")
    if alg not in ALGORITHMS:
        raise Problem("badSignatureAlgorithm", f"alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if alg != "RS256":
                raise Problem("badSignatureAlgorithm", f"an RSA key signs with RS256, not {alg}")
            key.verify(signed.signature, signed.signing_input, padding.PKCS1v15(), hashes.SHA256())
            return
        _cls, expected, size = CURVES["P-256" if key.curve.key_size == 256 else "P-384"]
        if alg != expected:
            raise Problem("badSignatureAlgorithm", f"this EC key signs with {expected}, not {alg}")
        if len(signed.signature) != 2 * size:
            raise Problem("malformed", "the ECDSA signature has the wrong length")
        r = int.from_bytes(signed.signature[:size], "big")
        s = int.from_bytes(signed.signature[size:], "big")
        digest = hashes.SHA256() if size == 32 else hashes.SHA384()
        key.verify(encode_dss_signature(r, s), signed.signing_input, ec.ECDSA(digest))
    except InvalidSignature:
        raise Problem("malformed", "the JWS signature does not verify") from None


def verify_hmac(signed: Signed, key: bytes) -> None:
    """External Account Binding (RFC 8555 7.3.4): HS256 over the inner JWS."""
    if signed.protected.get("alg") != "HS256":
        raise Problem("malformed", "the external account binding must use HS256")
    mac = hmac.new(key, signed.signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, signed.signature):
        raise Problem("unauthorized", "the external account binding's MAC does not verify")


def parse_inner(value: Any) -> Signed:
    """A JWS carried as a JSON value inside a payload (key change, EAB)."""
    if not isinstance(value, dict):
        raise Problem("malformed", "expected a JWS object")
    return parse(json.dumps(value).encode())
