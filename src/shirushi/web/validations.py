"""`POST /api/v1/validations {"name", "method"}` and `POST /api/v1/validations/{id}/check`:
domain validation for the API door (validation/requests.py, BR 3.2.2.4.7 / 3.2.2.4.18), the
same use case as `shirushi validate`. Role "issue". Does I/O through the Backend, in the thread
pool (the check resolves names and fetches over HTTP).

201 `{"id", "name", "method", "value", "where"}`; the check answers 200 `{"name", "method":
"BR 3.2.2.4.x", "valid": true}`, 403 `validation` when it fails (the value is used up), 404 for an
unknown id.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from shirushi.backend import Backend
from shirushi.validation import requests
from shirushi.web import schemas
from shirushi.web.operations import UNAVAILABLE, Answer, Call, Operation

_START_BODY: schemas.JsonSchema = {
    "type": "object",
    "required": ["name", "method"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[0-9A-Za-z*._-]+$"},
        "method": {"type": "string", "enum": list(requests.METHODS)},
    },
}
_STARTED: schemas.JsonSchema = {
    "type": "object",
    "required": ["id", "name", "method", "value", "where"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "method": {"type": "string"},
        "value": {"type": "string", "description": "the single-use random value (>= 112 bits, policy 3.2.7)"},
        "where": {"type": "string", "description": "the DNS name or URL where the value must be placed"},
    },
}
_CHECKED: schemas.JsonSchema = {
    "type": "object",
    "required": ["name", "method", "valid"],
    "properties": {"name": {"type": "string"}, "method": {"type": "string"}, "valid": {"const": True}},
}
# The ids requests.start makes (secrets.token_hex(12)), and older URL-safe base64 ones.
_ID: schemas.JsonSchema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}


def validation_operations(backend: Backend) -> list[Operation]:
    async def start(call: Call) -> Response:
        name: str = call.body["name"]
        method: str = call.body["method"]
        made = await run_in_threadpool(requests.start, backend.store.acme, name, method, backend.clock.now())
        body = {
            "id": made.id,
            "name": made.name,
            "method": made.method,
            "value": made.value,
            "where": made.where(backend.settings.validation.http_port),
        }
        return JSONResponse(body, status_code=201)

    async def check(call: Call) -> Response:
        request_id = call.params["id"]

        def work() -> dict[str, Any]:
            attempt = requests.check(
                backend.settings,
                backend.store.acme,
                backend.store.validations,
                backend.authority.gate().resolver,
                request_id,
                backend.clock.now(),
            )
            return {"name": attempt.name, "method": f"BR {attempt.method}", "valid": True}

        return JSONResponse(await run_in_threadpool(work))

    return [
        Operation(
            "POST",
            "/api/v1/validations",
            start,
            "Start a domain validation (BR 3.2.2.4.7 dns, 3.2.2.4.18 website)",
            role="issue",
            body=_START_BODY,
            responses={
                201: Answer("the id, the single-use random value and where to put it", _STARTED),
                422: Answer("the name is not one this CA validates (a wildcard by the website method, ...)"),
                503: UNAVAILABLE,
            },
        ),
        Operation(
            "POST",
            "/api/v1/validations/{id}/check",
            check,
            "Check a started validation once; a success is recorded for 30 days (policy 3.2.7)",
            role="issue",
            params={"id": _ID},
            responses={
                200: Answer("validated", _CHECKED),
                403: Answer(
                    "the check failed, or the value was used or expired (error validation); or the API is "
                    "disabled, or the token lacks the role 'issue'"
                ),
                404: Answer("no such validation"),
                503: UNAVAILABLE,
            },
        ),
    ]
