"""`POST /api/v1/problem-reports` (BR 4.9.3): certificate problem reports, open to anyone.

`{"serial": HEX | "certificate": PEM, "reason": TEXT, "contact": TEXT, "detail": TEXT}` answers
201 `{"id", "received_at", "deadline"}`; the deadline is 24 h after receipt (BR 4.9.5). The
route is rate-limited per client address (`api.open_requests_per_minute`, in `web.guard`) and
its body and fields are size-bounded (`shirushi.reports`). Does I/O through the Store.
"""

from __future__ import annotations

import datetime as dt

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from shirushi import reports
from shirushi.backend import Backend
from shirushi.web import schemas
from shirushi.web.guard import client_address
from shirushi.web.json_io import parse_serial
from shirushi.web.operations import UNAVAILABLE, Answer, Call, Operation


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(limit: int, description: str, *, min_length: int = 0) -> schemas.JsonSchema:
    # No control characters but tab and newline, as `reports` requires.
    return {
        "type": "string",
        "pattern": "^[^\\u0000-\\u0008\\u000b-\\u001f]*$",
        "minLength": min_length,
        "maxLength": limit,
        "description": description,
    }


def problem_report_operation(backend: Backend) -> Operation:
    async def problem_report(call: Call) -> Response:
        data = call.body
        serial = parse_serial(data["serial"]) if "serial" in data else None
        report = await run_in_threadpool(
            lambda: reports.receive(
                backend.store,
                backend.clock,
                serial=serial,
                certificate=data.get("certificate"),
                reason=data["reason"],
                contact=data.get("contact", ""),
                detail=data.get("detail", ""),
                client=client_address(call.request),
            )
        )
        return JSONResponse(
            {"id": report.id, "received_at": _time(report.received_at), "deadline": _time(report.deadline)},
            status_code=201,
        )

    return Operation(
        "POST",
        "/api/v1/problem-reports",
        problem_report,
        "Report a problem with a certificate (BR 4.9.3); open to anyone, rate-limited",
        role=None,
        rate_limited=True,
        body={
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {
                "serial": schemas.SERIAL,
                "certificate": {**schemas.CERTIFICATE_PEM, "description": "the certificate, PEM (or give serial)"},
                "reason": _text(reports.MAX_REASON, "what is wrong (key compromise, misuse, ...)", min_length=1),
                "contact": _text(reports.MAX_CONTACT, "how to reach the reporter"),
                "detail": _text(reports.MAX_DETAIL, "anything else"),
            },
            # The certificate by serial, as PEM, or both (then they must agree).
            "anyOf": [{"required": ["serial"]}, {"required": ["certificate"]}],
        },
        responses={
            201: Answer(
                "received; the deadline is 24 h later (BR 4.9.5)",
                {
                    "type": "object",
                    "required": ["id", "received_at", "deadline"],
                    "properties": {"id": {"type": "integer"}, "received_at": schemas.TIME, "deadline": schemas.TIME},
                },
            ),
            404: Answer("no certificate with that serial was issued here"),
            422: Answer(
                "refused: the certificate does not parse, is not the one issued here with its serial, or "
                "names another serial than `serial`"
            ),
            503: UNAVAILABLE,
        },
    )
