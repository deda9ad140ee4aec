"""Key-compromise reports (policy 4.9.12), the two open routes: the report, and proof by
challenge: hand out a challenge bound to a public key, and accept a report that signs it with
that key. Does I/O (the Store's challenge table, the revoker), in the thread pool.

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
from starlette.responses import JSONResponse, Response

from shirushi.asn1.keys import spki_sha256
from shirushi.backend import Backend
from shirushi.ca.csr import SubscriberKey
from shirushi.errors import InputError
from shirushi.serials import serial_text
from shirushi.web import schemas
from shirushi.web.json_io import string_field
from shirushi.web.key_proof import (
    CHALLENGE_PREFIX,
    CHALLENGE_RANDOM_BYTES,
    MAX_SIGNATURE_BYTES,
    ProofRefused,
    base64_field,
    check_challenge_signature,
    compromise_proof,
    load_public_key,
)
from shirushi.web.operations import UNAVAILABLE, Answer, Call, Operation

CHALLENGE_LIFE = dt.timedelta(hours=1)
PROOF_FIELDS = ("public_key", "challenge", "signature")


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def challenge_operation(backend: Backend) -> Operation:
    async def key_compromise_challenge(call: Call) -> Response:
        key = load_public_key(call.body["public_key"])
        value = CHALLENGE_PREFIX + secrets.token_bytes(CHALLENGE_RANDOM_BYTES)
        now = backend.clock.now()
        expires = now + CHALLENGE_LIFE
        await run_in_threadpool(backend.store.challenges.add, value, spki_sha256(key), at=now, expires_at=expires)
        return JSONResponse({"challenge": base64.b64encode(value).decode(), "expires_at": _time(expires)})

    return Operation(
        "POST",
        "/api/v1/key-compromise/challenge",
        key_compromise_challenge,
        "A challenge to sign with a compromised key (policy 4.9.12); open to anyone, rate-limited",
        role=None,
        rate_limited=True,
        body={
            "type": "object",
            "required": ["public_key"],
            "additionalProperties": False,
            "properties": {"public_key": schemas.PUBLIC_KEY},
        },
        responses={
            200: Answer(
                "the challenge; single use, for that key only, valid one hour",
                {
                    "type": "object",
                    "required": ["challenge", "expires_at"],
                    "properties": {"challenge": {"type": "string"}, "expires_at": schemas.TIME},
                },
            ),
            422: Answer("not an RSA or ECDSA public key this CA certifies"),
            503: UNAVAILABLE,
        },
    )


def report_operation(backend: Backend) -> Operation:
    async def key_compromise(call: Call) -> Response:
        data = call.body

        def work() -> list[str]:
            # In the thread pool: validating a large private key takes seconds of CPU, and this
            # route is open to anyone (policy 4.9.12).
            key = challenge_proof(backend, data) if is_challenge_proof(data) else compromise_proof(data)
            results = backend.revoker.revoke_key(
                spki_sha256(key),
                "keyCompromise",
                requested_by="key-compromise report",
                note="keyCompromise reported through the API (policy 4.9.12)",
                reported=True,
            )
            return [serial_text(r.record.serial) for r in results]

        revoked = await run_in_threadpool(work)
        return JSONResponse({"revoked": revoked})

    def proof(required: list[str], properties: dict[str, schemas.JsonSchema]) -> schemas.JsonSchema:
        return {"type": "object", "required": required, "additionalProperties": False, "properties": properties}

    csr = {
        **schemas.CSR,
        "description": "a CSR signed by the compromised key whose subject CN states the compromise, "
        "e.g. 'Proof of Key Compromise'",
    }
    return Operation(
        "POST",
        "/api/v1/key-compromise",
        key_compromise,
        "Report a compromised key (policy 4.9.12); open to anyone",
        role=None,
        description="Revokes every certificate with that key (reason keyCompromise) and blocks the key "
        "from future issuance (BR 6.1.1.3).",
        body={
            "oneOf": [
                proof(["private_key"], {"private_key": schemas.PRIVATE_KEY}),
                proof(["csr"], {"csr": csr}),
                proof(
                    list(PROOF_FIELDS),
                    {"public_key": schemas.PUBLIC_KEY, "challenge": schemas.CHALLENGE, "signature": schemas.SIGNATURE},
                ),
            ],
            "description": "a proof: {private_key}, {csr} or {public_key, challenge, signature}",
        },
        responses={
            200: Answer(
                "the serials revoked (none if this CA never certified the key; it is blocked all the same)",
                {"type": "object", "required": ["revoked"], "properties": {"revoked": schemas.SERIALS}},
            ),
            422: Answer(
                "no valid proof (the key does not load, the CSR does not verify or its CN states no compromise, "
                "the signature does not verify, the challenge is unknown, expired, used or for another key)"
            ),
            503: UNAVAILABLE,
        },
    )


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
