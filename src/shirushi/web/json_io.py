"""JSON in and out of the RA/admin API: request bodies and fields, and errors as responses.

Errors are `{"error": CODE, "detail": TEXT}`; a ShirushiError gets its status here and nowhere
else. Reads the request body; no other I/O.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from shirushi.errors import ArgumentError, InputError, ShirushiError, WeakKeyError

MAX_BODY = 64 * 1024


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def worded(exc: ShirushiError) -> str:
    """The error in the API's words: an argument is named as its JSON field."""
    return f"field {exc.argument!r} {exc.rule}" if isinstance(exc, ArgumentError) else str(exc)


def error_response(exc: ShirushiError) -> JSONResponse:
    status = exc.http_status if 400 <= exc.http_status < 600 else 400
    if isinstance(exc, WeakKeyError):
        # BR 6.1.1.3: the RA front end can tell the subscriber which weakness, and for which key.
        body = {"error": exc.code, "detail": worded(exc), "weakness": exc.weakness, "spki_sha256": exc.spki_sha256}
        return JSONResponse(body, status_code=status)
    return error(status, exc.code, worded(exc))


async def json_body(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InputError(f"request body over {limit} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError("request body is not JSON (or nests too deeply)") from None
    if not isinstance(data, dict):
        raise InputError("request body must be a JSON object")
    return data


def string_field(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"field {key!r} must be a non-empty string")
    return value


def parse_serial(text: str) -> int:
    try:
        value = int(text.replace(":", ""), 16)
    except ValueError:
        raise InputError(f"serial {text!r} is not hexadecimal") from None
    if value <= 0:
        raise InputError(f"serial {text!r} is out of range")
    return value
