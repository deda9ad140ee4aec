"""Decode an OCSP request, from a POST body or a GET path, into one CertID. Pure: no I/O.

The result is either a `CertID` or one of the OCSP error statuses below (RFC 6960 4.2.1); a bad
request is a value, never an exception escaping to the caller.

pyca/cryptography's loader does the strict DER work (about a microsecond; it refuses BER, trailing
bytes, an explicit default version and zero or several Requests). What it leaves open is checked
here:

* serial numbers are compared as integers; zero, negative and over-20-octet serials are refused
  (RFC 5280 4.1.2.2; standards OCSP-13);
* a nonce must be 1..128 octets (RFC 9654 2.1) but is otherwise ignored: the responder holds no
  keys and returns the presigned response without it (RFC 9919 3.2.1 and 5);
* unknown non-critical request extensions are ignored (RFC 6960 4.1.2); an unknown *critical* one
  is refused, since ignoring it would contradict its criticality;
* requestorName and request signatures are ignored (RFC 9919 3.1.2);
* singleRequestExtensions are tolerated and ignored (RFC 9919 3.1.1 forbids clients to send them,
  yet some do);
* a hash algorithm other than SHA-1 or SHA-256 is answered `unauthorized`: the request is well
  formed but no presigned response can match it (RFC 9919 3.2.3).
"""

from __future__ import annotations

import binascii
import dataclasses
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ObjectIdentifier
from cryptography.x509 import ocsp as x509_ocsp

# OCSPResponseStatus values (RFC 6960 4.2.1). 4 is unused; sigRequired (5) is never sent because a
# public CA must not demand signed requests (RFC 9919 3.1.2).
MALFORMED_REQUEST: Final = 1
INTERNAL_ERROR: Final = 2
TRY_LATER: Final = 3
UNAUTHORIZED: Final = 6

NONCE_MIN: Final = 1
NONCE_MAX: Final = 128  # RFC 9654 2.1: Nonce ::= OCTET STRING (SIZE(1..128))
SERIAL_MAX_OCTETS: Final = 20  # RFC 5280 4.1.2.2

_OCSP = "1.3.6.1.5.5.7.48.1."
_NONCE: Final = ObjectIdentifier(_OCSP + "2")
# Request extensions this responder understands well enough to honour a critical flag: the nonce
# (ignored by design, RFC 9919 3.2.1), AcceptableResponses (we always answer id-pkix-ocsp-basic,
# RFC 6960 4.4.3), Service Locator (4.4.6; we are the authoritative responder) and Preferred
# Signature Algorithms (4.4.7; a SHOULD, and the presigned response is what we have).
_UNDERSTOOD: Final = frozenset(ObjectIdentifier(_OCSP + n) for n in ("2", "4", "7", "8"))

_ALGORITHMS: Final[dict[type[hashes.HashAlgorithm], str]] = {
    hashes.SHA1: "sha1",
    hashes.SHA256: "sha256",
}


@dataclasses.dataclass(frozen=True, slots=True)
class CertID:
    """The one certificate a request asks about (RFC 6960 4.1.1)."""

    alg: str  # "sha1" | "sha256"
    name_hash: bytes
    key_hash: bytes
    serial: int
    # The request carried a nonce: it is answered like any other, but it is one of a kind.
    nonce: bool = dataclasses.field(default=False, compare=False)


def parse_request(der: bytes) -> CertID | int:
    """DER OCSPRequest -> its single CertID, or MALFORMED_REQUEST / UNAUTHORIZED."""
    try:
        request = x509_ocsp.load_der_ocsp_request(der)
        # The loader parses extensions lazily; a broken known extension (or a duplicate one,
        # RFC 5280 4.2) raises here.
        extensions = request.extensions
        nonce = False
        for ext in extensions:
            if ext.oid == _NONCE:
                nonce = True
                value = ext.value
                size = len(value.nonce) if isinstance(value, x509.OCSPNonce) else 0
                if not NONCE_MIN <= size <= NONCE_MAX:
                    return MALFORMED_REQUEST
            elif ext.critical and ext.oid not in _UNDERSTOOD:
                return MALFORMED_REQUEST
        serial = request.serial_number
        name_hash = request.issuer_name_hash
        key_hash = request.issuer_key_hash
    # The loader reports zero or several Requests with NotImplementedError and other defects with
    # ValueError or cryptography's own exceptions (DuplicateExtension, ...). Whatever it raises on
    # client bytes means the same thing here: the request does not conform to OCSP syntax.
    except Exception:
        return MALFORMED_REQUEST
    if serial <= 0 or serial.bit_length() >= 8 * SERIAL_MAX_OCTETS:
        return MALFORMED_REQUEST
    try:
        algorithm = request.hash_algorithm
    except Exception:  # UnsupportedAlgorithm: an OID pyca does not know.
        return UNAUTHORIZED
    alg = _ALGORITHMS.get(type(algorithm))
    if alg is None:
        return UNAUTHORIZED
    return CertID(alg, name_hash, key_hash, serial, nonce)


# --- GET ------------------------------------------------------------------------------------

_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
# base64url (RFC 4648 5) folded into the standard alphabet, and a space back to '+', which a
# form-style decoder somewhere on the way may have produced (standards P1, P3).
_FOLD: Final = bytes.maketrans(b"-_ ", b"+/+")


def path_prefix(ocsp_url_path: str) -> bytes:
    """The path part of `ocsp.url` as a GET prefix: no trailing '/', "" for the root."""
    return ocsp_url_path.encode("ascii", "replace").rstrip(b"/")


def decode_get_path(target: bytes, prefix: bytes) -> bytes | None:
    """`/{prefix}/{url-encoded base64 DER}` -> the DER, or None when it cannot be decoded.

    RFC 6960 A.1 / RFC 9919 6: the path is the URL-encoding of the base64 of the DER. Clients
    differ (standards P1-P3): some percent-encode everything, some nothing; HAProxy appends '/' to
    an AIA URL that already ends in '/'. So: drop a query, strip the prefix if present and any
    number of leading '/', percent-decode per RFC 3986 2.1 (not form decoding: '+' stays '+'), fold
    ' ' and the base64url alphabet into standard base64 and restore missing padding.
    """
    query = target.find(b"?")
    if query >= 0:
        target = target[:query]
    if prefix and target.startswith(prefix) and target[len(prefix) : len(prefix) + 1] in (b"/", b""):
        target = target[len(prefix) :]
    # Stripping every leading '/' is safe: a DER OCSPRequest starts with 0x30, base64 'M'.
    text = target.lstrip(b"/")
    if b"%" in text:
        decoded = _percent_decode(text)
        if decoded is None:
            return None
        text = decoded
    text = text.translate(_FOLD)
    missing = -len(text) % 4
    if missing == 3:
        return None  # one dangling character is never valid base64
    if missing:
        text += b"=" * missing
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None


def _percent_decode(text: bytes) -> bytes | None:
    """RFC 3986 2.1 percent-decoding; None for a '%' not followed by two hex digits."""
    parts = text.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            return None
        out.append(int(part[:2], 16))
        out += part[2:]
    return bytes(out)
