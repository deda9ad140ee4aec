"""JSON out of the RA/admin API: errors as responses, and the fields of validated bodies.

Errors are `{"error": CODE, "detail": TEXT}`; a ShirushiError gets its status here and nowhere
else (400 form, 413 size, 422 content, 404, 409, 503: `errors.py`). Reading and validating
request bodies is `web.operations`. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from shirushi.errors import ArgumentError, InputError, ShirushiError, WeakKeyError


def error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


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


def string_field(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"field {key!r} must be a non-empty string")
    return value


def parse_serial(text: str) -> int:
    """A serial as a number; the routes' schemas (`schemas.SERIAL`) admit only hex of 1-20 octets."""
    try:
        value = int(text.replace(":", ""), 16)
    except ValueError:
        raise InputError(f"serial {text!r} is not hexadecimal") from None
    if value <= 0:
        raise InputError(f"serial {text!r} is out of range")
    return value
