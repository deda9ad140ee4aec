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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shirushi.backend import Backend
from shirushi.errors import InputError
from shirushi.validation import requests
from shirushi.web.guard import Handler
from shirushi.web.json_io import json_body, string_field


def start_handler(backend: Backend) -> Handler:
    async def start(request: Request) -> Response:
        data = await json_body(request)
        unknown = sorted(set(data) - {"name", "method"})
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}: a validation takes 'name' and 'method'")
        name = string_field(data, "name")
        method = string_field(data, "method")
        assert name is not None and method is not None
        made = await run_in_threadpool(requests.start, backend.store.acme, name, method, backend.clock.now())
        body = {
            "id": made.id,
            "name": made.name,
            "method": made.method,
            "value": made.value,
            "where": made.where(backend.settings.validation.http_port),
        }
        return JSONResponse(body, status_code=201)

    return start


def check_handler(backend: Backend) -> Handler:
    async def check(request: Request) -> Response:
        request_id = request.path_params["id"]

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

    return check


_NAME = {
    "type": "object",
    "required": ["name", "method"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "method": {"type": "string", "enum": list(requests.METHODS)}},
}
# These routes in the OpenAPI document (web/api.py merges them).
PATHS: dict[str, Any] = {
    "/api/v1/validations": {
        "post": {
            "summary": "Start a domain validation (BR 3.2.2.4.7 dns, 3.2.2.4.18 website); role issue",
            "requestBody": {"content": {"application/json": {"schema": _NAME}}},
            "responses": {
                "201": {"description": "id, name, method, the single-use random value and where to put it"},
                "400": {"description": "malformed request, unknown method, bad name"},
            },
        }
    },
    "/api/v1/validations/{id}/check": {
        "post": {
            "summary": "Check a started validation once and record the result for 30 days; role issue",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "validated: name, method"},
                "403": {"description": "the check failed, or the value was used or expired (error validation)"},
                "404": {"description": "no such validation"},
            },
        }
    },
}
