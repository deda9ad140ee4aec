"""`POST /api/v1/certificates/{serial}/renew {"csr": PEM}` (policy 4.7): the renewal route.

201 with the new certificate, as issuance answers; 404 unknown serial, 409 revoked or expired,
400 a CSR with the old key, 422 before the renewal window (the rules are `ca.renewal`'s).
Does I/O through the Backend, in the thread pool.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shirushi.backend import Backend
from shirushi.ca.hierarchy import pem
from shirushi.ca.renewal import renew
from shirushi.errors import InputError
from shirushi.serials import serial_text
from shirushi.web.guard import Handler, requested_by
from shirushi.web.json_io import json_body, parse_serial, string_field

FIELDS = ("csr", "days")


def renew_handler(backend: Backend) -> Handler:
    async def renew_route(request: Request) -> Response:
        serial = parse_serial(request.path_params["serial"])
        data = await json_body(request)
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            # Renewal keeps the certified data (policy 4.7); names or subject here would be ignored.
            raise InputError(f"unknown field(s) {', '.join(unknown)}: a renewal takes 'csr' and optionally 'days'")
        csr = string_field(data, "csr")
        assert csr is not None
        days = data.get("days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)):
            raise InputError("field 'days' must be an integer")
        who = requested_by(request)

        def work() -> dict[str, Any]:
            issued, old = renew(backend.authority, serial, csr.encode(), days=days, audit={"requested_by": who})
            hierarchy = backend.authority.hierarchy()
            body: dict[str, Any] = {
                "serial": serial_text(issued.record.serial),
                "certificate": pem(issued.certificate),
                "chain": pem(hierarchy.issuing) + pem(hierarchy.root),
                "renewal_of": serial_text(old.serial),
            }
            if issued.warnings:
                body["pending"] = issued.warnings
            return body

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    return renew_route


# This route in the OpenAPI document (web/api.py merges it).
PATHS: dict[str, Any] = {
    "/api/v1/certificates/{serial}/renew": {
        "post": {
            "summary": "Renew a certificate with a new key (policy 4.7); role issue",
            "parameters": [{"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["csr"],
                            "additionalProperties": False,
                            "properties": {"csr": {"type": "string"}, "days": {"type": "integer"}},
                        }
                    }
                }
            },
            "responses": {
                "201": {"description": "issued: serial, certificate, chain, renewal_of; same names and subject"},
                "400": {"description": "malformed request, or a CSR with the old key (error same_key)"},
                "401": {"description": "no or wrong token"},
                "403": {"description": "the token lacks the role issue"},
                "404": {"description": "unknown serial"},
                "409": {"description": "the certificate is revoked or expired"},
                "422": {"description": "before the renewal window (90 days before expiry)"},
            },
        }
    }
}
