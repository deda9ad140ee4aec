"""Key-compromise proof by challenge (policy 4.9.12): hand out a challenge bound to a public
key, and accept a report that signs it with that key. Does I/O (the Store's challenge table).

`POST /api/v1/key-compromise/challenge {"public_key": PEM}` answers 200
`{"challenge": B64, "expires_at"}`: random bytes after a fixed prefix, valid one hour, for that
key only. `POST /api/v1/key-compromise {"public_key", "challenge", "signature"}` then proves the
compromise: `challenge_proof` checks the signature first and uses the challenge up only then, in
one conditional UPDATE, so a challenge proves at most one report, in any process.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shirushi.asn1.keys import spki_sha256
from shirushi.backend import Backend
from shirushi.ca.csr import SubscriberKey
from shirushi.errors import InputError
from shirushi.web.guard import Handler
from shirushi.web.json_io import json_body, string_field
from shirushi.web.key_proof import (
    CHALLENGE_PREFIX,
    CHALLENGE_RANDOM_BYTES,
    MAX_SIGNATURE_BYTES,
    ProofRefused,
    base64_field,
    check_challenge_signature,
    load_public_key,
)

CHALLENGE_LIFE = dt.timedelta(hours=1)
# A PEM public key of an 8192-bit RSA key is under 2 KiB; the body bound leaves room for that.
MAX_CHALLENGE_BODY = 8 * 1024
PROOF_FIELDS = ("public_key", "challenge", "signature")


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def challenge_handler(backend: Backend) -> Handler:
    async def challenge(request: Request) -> Response:
        data = await json_body(request, MAX_CHALLENGE_BODY)
        text = string_field(data, "public_key")
        assert text is not None
        key = load_public_key(text)
        value = CHALLENGE_PREFIX + secrets.token_bytes(CHALLENGE_RANDOM_BYTES)
        now = backend.clock.now()
        expires = now + CHALLENGE_LIFE
        await run_in_threadpool(backend.store.challenges.add, value, spki_sha256(key), at=now, expires_at=expires)
        return JSONResponse({"challenge": base64.b64encode(value).decode(), "expires_at": _time(expires)})

    return challenge


def is_challenge_proof(data: dict[str, Any]) -> bool:
    return any(field in data for field in PROOF_FIELDS)


def challenge_proof(backend: Backend, data: dict[str, Any]) -> SubscriberKey:
    """The key a signed challenge proves compromised; uses the challenge up. Blocking: call it
    from the thread pool."""
    missing = [f for f in PROOF_FIELDS if f not in data]
    if missing:
        raise InputError(
            f"a proof by challenge needs public_key, challenge and signature; missing {', '.join(missing)}"
        )
    text = string_field(data, "public_key")
    assert text is not None
    key = load_public_key(text)
    value = base64_field(data, "challenge", len(CHALLENGE_PREFIX) + CHALLENGE_RANDOM_BYTES)
    signature = base64_field(data, "signature", MAX_SIGNATURE_BYTES)
    spki = spki_sha256(key)
    now = backend.clock.now()
    challenges = backend.store.challenges
    if not challenges.usable(value, spki, now):
        raise ProofRefused("challenge unknown, expired, already used, or made for another key: ask for a new one")
    check_challenge_signature(key, value, signature)
    if not challenges.use(value, spki, now):
        raise ProofRefused("challenge already used by another report: ask for a new one")
    return key


# This route in the OpenAPI document (web/api.py merges it).
PATHS: dict[str, Any] = {
    "/api/v1/key-compromise/challenge": {
        "post": {
            "summary": "A challenge to sign with a compromised key (policy 4.9.12); open to anyone, rate-limited",
            "security": [],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["public_key"],
                            "properties": {"public_key": {"type": "string", "description": "PEM SubjectPublicKeyInfo"}},
                        }
                    }
                }
            },
            "responses": {
                "200": {"description": "challenge (base64) and expires_at (1 h); single use, for that key only"},
                "400": {"description": "not a PEM RSA or ECDSA public key"},
                "429": {"description": "too many requests from this address (Retry-After)"},
            },
        }
    }
}
