"""JSON Schemas the API's routes are declared with: PEM objects, serials, reasons, records, errors.

Pure data. Each schema is exactly as strict as the code behind it: what it admits either succeeds
or is refused for its content (HTTP 422), never for its form (400). Patterns use only ASCII
character classes (no `.`, `\\d`, `\\s`, `\\w`: Python's `re`, which validates here, and ECMA-262,
which clients read, disagree on those), so every body has a byte bound (`web.operations`).
"""

from __future__ import annotations

from typing import Any

from shirushi.ca import MAX_CSR_BYTES
from shirushi.reasons import ALLOWED, CA_ONLY
from shirushi.web.key_proof import CHALLENGE_PREFIX, CHALLENGE_RANDOM_BYTES, MAX_SIGNATURE_BYTES

JsonSchema = dict[str, Any]

ERROR: JsonSchema = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. bad_request, invalid, policy, not_found"},
        "detail": {"type": "string", "description": "one line for a person"},
    },
}


def pem(label: str, *, max_length: int, description: str) -> JsonSchema:
    """A PEM text block (RFC 7468 2): BEGIN line, base64 lines, END line; optional final newline."""
    return {
        "type": "string",
        "pattern": (
            f"^-----BEGIN {label}-----\\r?\\n(?:[A-Za-z0-9+/=]{{1,76}}\\r?\\n)+-----END {label}-----(?:\\r?\\n)?$"
        ),
        "maxLength": max_length,
        "description": description,
    }


def base64(*, octets: int, description: str) -> JsonSchema:
    """Standard base64 (RFC 4648 4, padded) of at most `octets` bytes."""
    return {
        "type": "string",
        "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        "minLength": 4,
        "maxLength": (octets + 2) // 3 * 4,
        "description": description,
    }


# ca/csr.py reads at most MAX_CSR_BYTES; cryptography also reads the "NEW" label older tools write.
CSR = pem(
    "(?:NEW )?CERTIFICATE REQUEST",
    max_length=MAX_CSR_BYTES,
    description="PKCS#10 certificate signing request, PEM",
)
# An 8192-bit RSA key (the largest a proof may hold, web/key_proof.py) is about 6.3 kB of PEM.
PRIVATE_KEY = pem(
    "(?:RSA |EC )?PRIVATE KEY",
    max_length=16384,
    description="the compromised key itself, unencrypted PEM (PKCS#8, PKCS#1 or SEC 1)",
)
# The SubjectPublicKeyInfo of an 8192-bit RSA key is about 1.5 kB of PEM.
PUBLIC_KEY = pem("PUBLIC KEY", max_length=4096, description="PEM SubjectPublicKeyInfo of an RSA or ECDSA key")
CERTIFICATE_PEM = pem("CERTIFICATE", max_length=16384, description="an X.509 certificate, PEM")
CHALLENGE = base64(
    octets=len(CHALLENGE_PREFIX) + CHALLENGE_RANDOM_BYTES,
    description="base64, as POST /api/v1/key-compromise/challenge gave it",
)
SIGNATURE = base64(
    octets=MAX_SIGNATURE_BYTES,
    description="base64; RSA PKCS#1 v1.5 or ECDSA (DER), SHA-256, over the decoded challenge bytes",
)

# RFC 5280 4.1.2.2: a positive integer of at most 20 octets, so 1 to 40 significant hex digits;
# leading zeros allowed (`openssl x509 -serial` pads to whole octets, up to 21 of them).
SERIAL: JsonSchema = {
    "type": "string",
    "pattern": "^0*[1-9A-Fa-f][0-9A-Fa-f]{0,39}$",
    "maxLength": 42,
    "description": "certificate serial number, hexadecimal (RFC 5280 4.1.2.2: positive, at most 20 octets)",
}

# Validity asked for; the lesser of this, ca.max_validity_days and the BR 6.3.2 schedule applies.
DAYS: JsonSchema = {
    "type": "integer",
    "minimum": 1,
    "maximum": 398,
    "description": "validity in days (BR 6.3.2: at most 398; ca.max_validity_days may lower it)",
}


def reason(*, by_subscriber: bool) -> JsonSchema:
    """The RFC 5280 5.3.1 reason names this requester may use (BR 7.2.2; reasons.py)."""
    names = [n for n in ALLOWED if not (by_subscriber and n in CA_ONLY)]
    return {"enum": names, "description": "RFC 5280 5.3.1 CRLReason name (BR 7.2.2)"}


TIME: JsonSchema = {"type": "string", "format": "date-time"}
PENDING: JsonSchema = {
    "type": "array",
    "items": {"type": "string"},
    "description": "follow-up steps that failed and are retried from the outbox (OCSP, CRL)",
}
SERIALS: JsonSchema = {"type": "array", "items": {"type": "string"}}
HEX: JsonSchema = {"type": "string", "pattern": "^[0-9A-F]+$"}

CERTIFICATE: JsonSchema = {
    "type": "object",
    "required": ["serial", "status", "not_before", "not_after", "revocation"],
    "properties": {
        "serial": HEX,
        "status": {"enum": ["good", "revoked"]},
        "not_before": TIME,
        "not_after": TIME,
        "revocation": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["reason", "revoked_at"],
                    "properties": {"reason": {"type": ["string", "null"]}, "revoked_at": TIME},
                },
            ]
        },
    },
}

REVOKED_RECORD: JsonSchema = {
    **CERTIFICATE,
    "required": [*CERTIFICATE["required"], "key_blocked"],
    "properties": {
        **CERTIFICATE["properties"],
        "key_blocked": {"type": "boolean", "description": "keyCompromise blocked the key (BR 6.1.1.3)"},
        "pending": PENDING,
    },
}

ISSUED: JsonSchema = {
    "type": "object",
    "required": ["serial", "certificate", "chain"],
    "properties": {
        "serial": HEX,
        "certificate": {"type": "string", "description": "the new certificate, PEM"},
        "chain": {"type": "string", "description": "the issuing CA certificate then the root, PEM; no leaf"},
        "pending": PENDING,
    },
}
