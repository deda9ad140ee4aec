"""`POST /api/v1/certificates/{serial}/renew {"csr": PEM}` (policy 4.7): the renewal route.

201 with the new certificate, as issuance answers; 404 unknown serial, 409 revoked or expired,
400 a CSR with the old key, 422 before the renewal window (the rules are `ca.renewal`'s).
Does I/O through the Backend, in the thread pool.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from shirushi.backend import Backend
from shirushi.ca.hierarchy import pem
from shirushi.ca.renewal import renew
from shirushi.serials import serial_text
from shirushi.web import schemas
from shirushi.web.guard import requested_by
from shirushi.web.json_io import parse_serial
from shirushi.web.operations import UNAVAILABLE, Answer, Call, Operation


def renew_operation(backend: Backend) -> Operation:
    async def renew_certificate(call: Call) -> Response:
        serial = parse_serial(call.params["serial"])
        csr: str = call.body["csr"]
        days: int | None = call.body.get("days")
        who = requested_by(call.request)

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

    return Operation(
        "POST",
        "/api/v1/certificates/{serial}/renew",
        renew_certificate,
        "Renew a certificate with a new key (policy 4.7)",
        role="issue",
        description="The new certificate keeps the names and subject of the old one; from 90 days "
        "before its expiry, with a key other than its own.",
        params={"serial": schemas.SERIAL},
        # Renewal keeps the certified data (policy 4.7): names or subject here are refused, not ignored.
        body={
            "type": "object",
            "required": ["csr"],
            "additionalProperties": False,
            "properties": {"csr": schemas.CSR, "days": schemas.DAYS},
        },
        responses={
            201: Answer(
                "issued: the new certificate and the serial it renews",
                {
                    **schemas.ISSUED,
                    "required": [*schemas.ISSUED["required"], "renewal_of"],
                    "properties": {**schemas.ISSUED["properties"], "renewal_of": schemas.HEX},
                },
            ),
            # interface.md: 400 for a CSR with the old key (error same_key), though it has the form.
            400: Answer("the request does not match its schema, or the CSR has the old key (error same_key)"),
            404: Answer("unknown serial"),
            409: Answer("the certificate is revoked or expired"),
            422: Answer(
                "refused: before the renewal window (90 days before expiry), not a subscriber certificate, "
                "or the CSR does not parse or verify or fails policy"
            ),
            503: UNAVAILABLE,
        },
    )
