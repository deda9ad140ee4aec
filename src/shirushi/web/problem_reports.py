"""`POST /api/v1/problem-reports` (BR 4.9.3): certificate problem reports, open to anyone.

`{"serial": HEX | "certificate": PEM, "reason": TEXT, "contact": TEXT, "detail": TEXT}` answers
201 `{"id", "received_at", "deadline"}`; the deadline is 24 h after receipt (BR 4.9.5). The
route is rate-limited per client address (`api.open_requests_per_minute`, in `web.guard`) and
its body and fields are size-bounded (`shirushi.reports`). Does I/O through the Store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shirushi import reports
from shirushi.backend import Backend
from shirushi.errors import InputError
from shirushi.web.guard import Handler, client_address
from shirushi.web.json_io import json_body, parse_serial, string_field

# A PEM certificate plus the largest fields, with room for JSON escapes.
MAX_REPORT_BODY = 32 * 1024
FIELDS = ("serial", "certificate", "reason", "contact", "detail")


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def problem_report_handler(backend: Backend) -> Handler:
    async def problem_report(request: Request) -> Response:
        data = await json_body(request, MAX_REPORT_BODY)
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}; a report has {', '.join(FIELDS)}")
        serial_text = string_field(data, "serial", required=False)
        serial = parse_serial(serial_text) if serial_text is not None else None
        certificate = string_field(data, "certificate", required=False)
        reason = string_field(data, "reason")
        assert reason is not None
        contact = _optional_text(data, "contact")
        detail = _optional_text(data, "detail")
        report = await run_in_threadpool(
            lambda: reports.receive(
                backend.store,
                backend.clock,
                serial=serial,
                certificate=certificate,
                reason=reason,
                contact=contact,
                detail=detail,
                client=client_address(request),
            )
        )
        return JSONResponse(
            {"id": report.id, "received_at": _time(report.received_at), "deadline": _time(report.deadline)},
            status_code=201,
        )

    return problem_report


def _optional_text(data: dict[str, object], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise InputError(f"field {key!r} must be a string")
    return value


# This route in the OpenAPI document (web/api.py merges it).
PATHS: dict[str, Any] = {
    "/api/v1/problem-reports": {
        "post": {
            "summary": "Report a problem with a certificate (BR 4.9.3); open to anyone, rate-limited",
            "security": [],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["reason"],
                            "additionalProperties": False,
                            "properties": {
                                "serial": {"type": "string"},
                                "certificate": {"type": "string", "description": "PEM, instead of serial"},
                                "reason": {"type": "string", "maxLength": reports.MAX_REASON},
                                "contact": {"type": "string", "maxLength": reports.MAX_CONTACT},
                                "detail": {"type": "string", "maxLength": reports.MAX_DETAIL},
                            },
                        }
                    }
                }
            },
            "responses": {
                "201": {"description": "id, received_at and deadline (24 h later, BR 4.9.5)"},
                "400": {"description": "malformed report"},
                "404": {"description": "no certificate with that serial was issued here"},
                "422": {"description": "the certificate given is not the one issued here with its serial"},
                "429": {"description": "too many requests from this address (Retry-After)"},
            },
        }
    }
}
