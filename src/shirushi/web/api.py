"""The RA/admin API (JSON over HTTP, Starlette). Does I/O through the Backend.

Every route but the open ones (key-compromise reports and challenges, problem reports, the
OpenAPI document) needs `Authorization: Bearer TOKEN` of a token with the route's role
(`web.guard`, docs/ra.md). Errors are `{"error": CODE, "detail": TEXT}` with a 4xx (or
503) status, mapped from ShirushiError in one place (`web.json_io`). Blocking work (signing,
database) runs in the thread pool so the event loop keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shirushi.asn1.keys import spki_sha256
from shirushi.backend import Backend
from shirushi.bulkrevoke import MAX_SERIALS
from shirushi.ca.hierarchy import pem
from shirushi.errors import InputError, NotFoundError
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord
from shirushi.web.guard import Guard, requested_by
from shirushi.web.json_io import error, json_body, parse_serial, string_field
from shirushi.web.key_challenge import PATHS as CHALLENGE_PATHS
from shirushi.web.key_challenge import challenge_handler, challenge_proof, is_challenge_proof
from shirushi.web.key_proof import compromise_proof
from shirushi.web.problem_reports import PATHS as REPORT_PATHS
from shirushi.web.problem_reports import problem_report_handler
from shirushi.web.ratelimit import RateLimit
from shirushi.web.renewal import PATHS as RENEWAL_PATHS
from shirushi.web.renewal import renew_handler
from shirushi.web.validations import PATHS as VALIDATION_PATHS
from shirushi.web.validations import check_handler, start_handler

log = logging.getLogger("shirushi.api")
# A bulk revocation: MAX_SERIALS serials of up to 40 hex digits (with colons, quotes, commas).
MAX_BULK_BODY = MAX_SERIALS * 64 + 4096


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


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Shirushi RA/admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            },
            "Certificate": {
                "type": "object",
                "properties": {
                    "serial": {"type": "string"},
                    "status": {"enum": ["good", "revoked"]},
                    "not_before": {"type": "string"},
                    "not_after": {"type": "string"},
                    "revocation": {"type": ["object", "null"]},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/certificates": {
            "post": {
                "summary": "Issue a server certificate from a CSR",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["csr"],
                                "properties": {
                                    "csr": {"type": "string"},
                                    "dns": {"type": "array", "items": {"type": "string"}},
                                    "days": {"type": "integer"},
                                    "subject": {"type": "string"},
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "201": {"description": "issued"},
                    "400": {"description": "bad request"},
                    "401": {"description": "no or wrong token"},
                },
            }
        },
        "/api/v1/certificates/{serial}": {
            "get": {
                "summary": "Status of a certificate",
                "parameters": [{"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the record"}, "404": {"description": "unknown serial"}},
            }
        },
        "/api/v1/certificates/{serial}/revoke": {
            "post": {
                "summary": "Revoke a certificate",
                "parameters": [{"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string"}}}}
                    }
                },
                "responses": {
                    "200": {
                        "description": "revoked: the record, with key_blocked true when the reason "
                        "(keyCompromise) blocked the key from future issuance (BR 6.1.1.3)"
                    },
                    "400": {"description": "reason not allowed"},
                    "404": {"description": "unknown serial"},
                    "409": {"description": "already revoked"},
                },
            }
        },
        "/api/v1/key-compromise": {
            "post": {
                "summary": "Report a compromised key (policy 4.9.12); open to anyone",
                "security": [],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "private_key": {"type": "string"},
                                    "csr": {"type": "string"},
                                    "public_key": {"type": "string"},
                                    "challenge": {"type": "string", "description": "base64, from .../challenge"},
                                    "signature": {
                                        "type": "string",
                                        "description": "base64; RSA PKCS#1 v1.5 or ECDSA, SHA-256, over the "
                                        "decoded challenge bytes",
                                    },
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": {"description": "revoked serials"},
                    "400": {"description": "no valid proof"},
                    "422": {"description": "signature or challenge refused (bad, expired, used, other key)"},
                },
            }
        },
        "/api/v1/revocations": {
            "post": {
                "summary": f"Revoke up to {MAX_SERIALS} certificates by serial (mass revocation, BR 4.9.1.1)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["serials", "reason"],
                                "properties": {
                                    "serials": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_SERIALS},
                                    "reason": {"type": "string"},
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": {
                        "description": "what happened to each serial: revoked, already_revoked, unknown, invalid "
                        "(not a serial), refused (serial -> why); OCSP and CRLs are updated before the answer"
                    },
                    "400": {"description": "malformed request or reason not allowed"},
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}
        },
    },
}


OPENAPI["paths"].update({**RENEWAL_PATHS, **CHALLENGE_PATHS, **REPORT_PATHS, **VALIDATION_PATHS})


def create_app(backend: Backend) -> Starlette:
    guard = Guard(backend)
    open_limit = backend.settings.api.open_requests_per_minute

    async def issue(request: Request) -> Response:
        data = await json_body(request)
        csr = string_field(data, "csr")
        dns = data.get("dns")
        if dns is not None and (not isinstance(dns, list) or not all(isinstance(d, str) for d in dns)):
            raise InputError("field 'dns' must be a list of strings")
        days = data.get("days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)):
            raise InputError("field 'days' must be an integer")
        subject = string_field(data, "subject", required=False)
        assert csr is not None
        who = requested_by(request)

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

    async def show(request: Request) -> Response:
        serial = parse_serial(request.path_params["serial"])
        rec = await run_in_threadpool(backend.store.certificate, serial)
        if rec is None:
            raise NotFoundError(f"no certificate with serial {serial_text(serial)}")
        return JSONResponse(record_json(rec))

    async def revoke(request: Request) -> Response:
        serial = parse_serial(request.path_params["serial"])
        data = await json_body(request)
        reason = data.get("reason", "unspecified")
        if not isinstance(reason, str):
            raise InputError("field 'reason' must be a string")
        result = await run_in_threadpool(
            backend.revoker.revoke, serial, reason, by_subscriber=True, requested_by=requested_by(request)
        )
        body = record_json(result.record)
        body["key_blocked"] = result.key_blocked  # BR 6.1.1.3: keyCompromise blocks the key
        if result.pending:
            body["pending"] = result.pending.messages()
        return JSONResponse(body)

    async def key_compromise(request: Request) -> Response:
        data = await json_body(request)

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

    async def bulk_revoke(request: Request) -> Response:
        data = await json_body(request, MAX_BULK_BODY)
        serials = data.get("serials")
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise InputError("field 'serials' must be a list of hexadecimal strings")
        if not 1 <= len(serials) <= MAX_SERIALS:
            raise InputError(f"field 'serials' must hold 1 to {MAX_SERIALS} serials, not {len(serials)}")
        reason = string_field(data, "reason")
        assert reason is not None
        parsed: list[int] = []
        invalid: list[str] = []
        for text in serials:
            try:
                serial = parse_serial(text)
            except InputError:
                serial = 0
            if serial <= 0 or serial.bit_length() > 160:  # RFC 5280 4.1.2.2: at most 20 octets
                invalid.append(text[:64])  # reported, not fatal to the batch
            else:
                parsed.append(serial)
        result = await run_in_threadpool(
            backend.bulk_revoker.revoke, parsed, reason, requested_by=requested_by(request, "api (bulk)")
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

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not_found", f"no route {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    wrap = guard.wrap
    return Starlette(
        routes=[
            Route("/api/v1/certificates", wrap(issue, role="issue"), methods=["POST"]),
            Route("/api/v1/certificates/{serial}", wrap(show, role="read"), methods=["GET"]),
            Route("/api/v1/certificates/{serial}/revoke", wrap(revoke, role="revoke"), methods=["POST"]),
            Route("/api/v1/certificates/{serial}/renew", wrap(renew_handler(backend), role="issue"), methods=["POST"]),
            Route("/api/v1/key-compromise", wrap(key_compromise, role=None), methods=["POST"]),
            Route(
                "/api/v1/key-compromise/challenge",
                wrap(challenge_handler(backend), role=None, limit=RateLimit(open_limit)),
                methods=["POST"],
            ),
            Route(
                "/api/v1/problem-reports",
                wrap(problem_report_handler(backend), role=None, limit=RateLimit(open_limit)),
                methods=["POST"],
            ),
            Route("/api/v1/revocations", wrap(bulk_revoke, role="revoke"), methods=["POST"]),
            Route("/api/v1/validations", wrap(start_handler(backend), role="issue"), methods=["POST"]),
            Route("/api/v1/validations/{id}/check", wrap(check_handler(backend), role="issue"), methods=["POST"]),
            Route("/api/v1/openapi.json", wrap(openapi, role=None), methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
