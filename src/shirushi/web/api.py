"""The RA/admin API (JSON over HTTP, Starlette). Does I/O through the Backend.

Each route is an `Operation` (`web.operations`): its path, method, role, the JSON Schemas of its
parameters and body and every answer it gives, declared next to its handler (here, and in
`web.renewal`, `web.key_challenge`, `web.problem_reports`). The routes and the OpenAPI document
(GET /api/v1/openapi.json, `web.openapi`) are both made from that one list, and bodies are
validated against it before a handler runs. Every route but the open ones (key-compromise
reports and challenges, problem reports, the document) needs `Authorization: Bearer TOKEN` of a
token with the route's role (`web.guard`, docs/ra.md). Errors are `{"error": CODE, "detail":
TEXT}`, mapped from ShirushiError in one place (`web.json_io`). Blocking work (signing,
database) runs in the thread pool so the event loop keeps serving.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shirushi import __version__
from shirushi.backend import Backend
from shirushi.bulkrevoke import MAX_SERIALS
from shirushi.ca.hierarchy import pem
from shirushi.errors import InputError, NotFoundError
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord
from shirushi.web import schemas
from shirushi.web.guard import Guard, requested_by
from shirushi.web.json_io import error, parse_serial
from shirushi.web.key_challenge import challenge_operation, report_operation
from shirushi.web.openapi import openapi_document
from shirushi.web.operations import UNAVAILABLE, Answer, Call, Operation, routes
from shirushi.web.problem_reports import problem_report_operation
from shirushi.web.renewal import renew_operation
from shirushi.web.validations import validation_operations

SERIAL_PARAM = {"serial": schemas.SERIAL}


def record_json(rec: CertificateRecord) -> dict[str, Any]:
    return {
        "serial": serial_text(rec.serial),
        "status": "revoked" if rec.revoked_at else "good",
        "not_before": rec.not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": rec.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revocation": None
        if rec.revoked_at is None
        else {
            "reason": rec.revocation_reason,
            "revoked_at": rec.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def create_app(backend: Backend) -> Starlette:
    async def issue(call: Call) -> Response:
        csr: str = call.body["csr"]
        dns: list[str] | None = call.body.get("dns")
        days: int | None = call.body.get("days")
        subject: str | None = call.body.get("subject")
        who = requested_by(call.request)

        def work() -> dict[str, Any]:
            # All of it in the thread pool (CSR checks, signing, the commit, presigning, PEM):
            # the event loop only moves bytes. The lint inside waits on a worker process.
            issued = backend.authority.issue(
                csr.encode(), dns_names=dns, days=days, subject=subject, audit={"requested_by": who}, door="api"
            )
            hierarchy = backend.authority.hierarchy()
            body: dict[str, Any] = {
                "serial": serial_text(issued.record.serial),
                "certificate": pem(issued.certificate),
                "chain": pem(hierarchy.issuing) + pem(hierarchy.root),
            }
            if issued.warnings:
                body["pending"] = issued.warnings  # issued; its OCSP response follows via the outbox
            return body

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    async def show(call: Call) -> Response:
        serial = parse_serial(call.params["serial"])
        rec = await run_in_threadpool(backend.store.certificate, serial)
        if rec is None:
            raise NotFoundError(f"no certificate with serial {serial_text(serial)}")
        return JSONResponse(record_json(rec))

    async def revoke(call: Call) -> Response:
        serial = parse_serial(call.params["serial"])
        reason: str = call.body.get("reason", "unspecified")
        result = await run_in_threadpool(
            backend.revoker.revoke, serial, reason, by_subscriber=True, requested_by=requested_by(call.request)
        )
        body = record_json(result.record)
        body["key_blocked"] = result.key_blocked  # BR 6.1.1.3: keyCompromise blocks the key
        if result.pending:
            body["pending"] = result.pending.messages()
        return JSONResponse(body)

    async def bulk_revoke(call: Call) -> Response:
        serials: list[str] = call.body["serials"]
        reason: str = call.body["reason"]
        parsed: list[int] = []
        invalid: list[str] = []
        for text in serials:
            try:
                serial = parse_serial(text)
            except InputError:
                serial = 0
            if serial <= 0 or serial.bit_length() > 160:  # RFC 5280 4.1.2.2: at most 20 octets
                invalid.append(text)  # reported, not fatal to the batch
            else:
                parsed.append(serial)
        result = await run_in_threadpool(
            backend.bulk_revoker.revoke, parsed, reason, requested_by=requested_by(call.request, "api (bulk)")
        )
        body: dict[str, Any] = {
            "revoked": [serial_text(r.serial) for r in result.revoked],
            "already_revoked": [serial_text(s) for s in result.already_revoked],
            "unknown": [serial_text(s) for s in result.unknown],
            "invalid": invalid,
            "refused": {serial_text(s): why for s, why in result.refused.items()},
        }
        if result.pending:
            body["pending"] = result.pending.messages()
        return JSONResponse(body)

    async def openapi(call: Call) -> Response:
        return JSONResponse(document)

    operations = [
        Operation(
            "POST",
            "/api/v1/certificates",
            issue,
            "Issue a server certificate from a CSR",
            role="issue",
            body=ISSUE_BODY,
            responses={
                201: Answer("issued; `chain` is the issuing CA certificate then the root, no leaf", schemas.ISSUED),
                403: Answer(
                    "the API is disabled, the token lacks the role 'issue', or domain validation or CAA "
                    "does not allow a name (BR 3.2.2.4, 3.2.2.8; validation.enforce)"
                ),
                422: Answer(
                    "refused: the CSR does not parse or verify, or a name, the key (weak, blocked, too small) "
                    "or pre-issuance lint fails policy"
                ),
                503: UNAVAILABLE,
            },
        ),
        Operation(
            "GET",
            "/api/v1/certificates/{serial}",
            show,
            "Status of a certificate",
            role="read",
            params=SERIAL_PARAM,
            responses={200: Answer("the record", schemas.CERTIFICATE), 404: Answer("unknown serial"), 503: UNAVAILABLE},
        ),
        Operation(
            "POST",
            "/api/v1/certificates/{serial}/revoke",
            revoke,
            "Revoke a certificate (reason unspecified when none is given)",
            role="revoke",
            params=SERIAL_PARAM,
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {"reason": schemas.reason(by_subscriber=True)},
            },
            responses={
                200: Answer(
                    "revoked: the record, with key_blocked true when the reason (keyCompromise) blocked the "
                    "key from future issuance (BR 6.1.1.3)",
                    schemas.REVOKED_RECORD,
                ),
                400: Answer("the request does not match its schema, or the reason is not allowed (BR 7.2.2)"),
                404: Answer("unknown serial"),
                409: Answer("already revoked"),
                422: Answer("refused: not a subscriber certificate, or already expired"),
                503: UNAVAILABLE,
            },
        ),
        renew_operation(backend),
        report_operation(backend),
        challenge_operation(backend),
        problem_report_operation(backend),
        *validation_operations(backend),
        Operation(
            "POST",
            "/api/v1/revocations",
            bulk_revoke,
            f"Revoke up to {MAX_SERIALS} certificates by serial (mass revocation, BR 4.9.1.1)",
            role="revoke",
            body=BULK_BODY,
            responses={
                200: Answer("what happened to each serial; OCSP and CRLs are updated before the answer", BULK_ANSWER),
                503: UNAVAILABLE,
            },
        ),
        Operation(
            "GET",
            "/api/v1/openapi.json",
            openapi,
            "This document",
            role=None,
            responses={200: Answer("OpenAPI 3.1", {"type": "object"})},
        ),
    ]
    document = openapi_document(operations, title="Shirushi RA/admin API", version=__version__)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not_found", f"no route {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        # Starlette's 405 carries `Allow` (RFC 9110 15.5.6: MUST); keep it in the JSON answer.
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}", headers)

    guarded = routes(operations, Guard(backend), open_per_minute=backend.settings.api.open_requests_per_minute)
    return Starlette(routes=guarded, exception_handlers={404: not_found, 405: not_allowed})


ISSUE_BODY: schemas.JsonSchema = {
    "type": "object",
    "required": ["csr"],
    "additionalProperties": False,
    "properties": {
        "csr": schemas.CSR,
        "dns": {
            "type": "array",
            "maxItems": 100,
            "items": {"type": "string", "maxLength": 253, "pattern": "^[0-9A-Za-z*._-]+$"},
            "description": "DNS names for the subjectAltName, instead of the CSR's",
        },
        "days": schemas.DAYS,
        "subject": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "e.g. CN=..."},
    },
}
BULK_BODY: schemas.JsonSchema = {
    "type": "object",
    "required": ["serials", "reason"],
    "additionalProperties": False,
    "properties": {
        "serials": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_SERIALS,
            "items": {
                "type": "string",
                "maxLength": 64,
                "pattern": "^[0-9A-Fa-f:]+$",
                "description": "hexadecimal, colons allowed; one that is zero or over 20 octets "
                "is reported as invalid, not fatal to the batch",
            },
        },
        "reason": schemas.reason(by_subscriber=False),
    },
}
BULK_ANSWER: schemas.JsonSchema = {
    "type": "object",
    "required": ["revoked", "already_revoked", "unknown", "invalid", "refused"],
    "properties": {
        "revoked": schemas.SERIALS,
        "already_revoked": schemas.SERIALS,
        "unknown": schemas.SERIALS,
        "invalid": schemas.SERIALS,
        "refused": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "serial -> why (not a subscriber certificate, expired, ...)",
        },
        "pending": schemas.PENDING,
    },
}
