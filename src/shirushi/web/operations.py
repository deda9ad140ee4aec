"""The API's routes as data: each `Operation` says its method, path, who may call it, the JSON
Schemas of its path parameters and body, and every answer it gives, next to its handler.

From one list of operations come the Starlette routes (here) and the OpenAPI 3.1 document
(`web.openapi`), so the document says exactly what the server does. Each route goes through
`web.guard` first (token and role, or the open routes' rate limit, and the audit record), then
reads the body (bounded by what the schema allows) and validates it and the path parameters with
`jsonschema`; a handler gets a `Call` holding valid data only. Status convention: 400 the
request does not match its schema, 413 the body is over its bound, 422 it matches but its
content is refused (a CSR that does not parse, a key the policy refuses). Operations on one path
share one Starlette route, so a 405 lists every method in `Allow`. I/O: reads the request.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import jsonschema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shirushi.errors import RequestError, TooLargeError
from shirushi.web.guard import Guard
from shirushi.web.ratelimit import RateLimit
from shirushi.web.schemas import JsonSchema

Role = Literal["issue", "revoke", "read"]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclasses.dataclass(frozen=True)
class Call:
    """One request that passed its operation's checks."""

    request: Request
    params: dict[str, str]
    body: dict[str, Any]  # {} when the operation takes no body


Handler = Callable[[Call], Awaitable[Response]]


@dataclasses.dataclass(frozen=True)
class Answer:
    """A documented response: a description and, for a success, its JSON body's schema (error
    statuses carry the shared Error object), and the headers it always carries."""

    description: str
    schema: JsonSchema | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # name -> what it says


UNAVAILABLE = Answer("the database, Redis or the signing key is unavailable; try again")


@dataclasses.dataclass(frozen=True)
class Operation:
    method: Method
    path: str  # Starlette/OpenAPI template: "/api/v1/certificates/{serial}"
    handler: Handler
    summary: str
    role: Role | None  # None: open to anyone
    responses: Mapping[int, Answer]  # the route's own answers; 400/401/403/413/429 are added
    body: JsonSchema | None = None
    params: Mapping[str, JsonSchema] = dataclasses.field(default_factory=dict)
    description: str = ""
    rate_limited: bool = False  # an open route limited per client address (api.open_requests_per_minute)
    max_body: int = 0  # computed from `body` when 0

    def __post_init__(self) -> None:
        names = set(re.findall(r"{(\w+)}", self.path))
        if names != set(self.params):
            raise ValueError(f"{self.method} {self.path}: path parameters {sorted(names)} need schemas")
        if self.rate_limited and self.role is not None:
            raise ValueError(f"{self.method} {self.path}: only open routes are rate-limited")
        if self.body is not None and not self.max_body:
            bound = max_json_bytes(self.body)
            if bound is None:
                raise ValueError(f"{self.method} {self.path}: the body schema must bound every size")
            # Room for a client's indentation and spacing around the largest valid body.
            object.__setattr__(self, "max_body", bound + bound // 4 + 4096)
        for schema in (self.body, *self.params.values()):
            if schema is not None:
                jsonschema.Draft202012Validator.check_schema(schema)

    def all_responses(self) -> dict[int, Answer]:
        """Every status this operation answers with: its own and the ones its checks add."""
        added: dict[int, Answer] = {}
        if self.body is not None or self.params:
            added[400] = Answer("the request does not match its schema (or the body is not JSON)")
        if self.role is not None:
            added[401] = Answer(
                "no bearer token, or a wrong one", headers={"WWW-Authenticate": "the Bearer challenge (RFC 6750 3)"}
            )
            added[403] = Answer(f"the API is disabled (no token configured), or the token lacks the role {self.role!r}")
        if self.body is not None:
            added[413] = Answer(f"request body over {self.max_body} bytes")
        if self.rate_limited:
            added[429] = Answer(
                "too many requests from this address", headers={"Retry-After": "seconds to wait (RFC 9110 10.2.3)"}
            )
        return dict(sorted({**added, **self.responses}.items()))


# -- sizes --------------------------------------------------------------------------------------

_WIDE_ESCAPES = re.compile(r"\\[dDsSwWpPxuUcN0-9]")


def _printable_ascii(pattern: str) -> bool:
    """True when every string the pattern admits is printable ASCII (plus CR, LF, tab): ASCII text,
    no `.`, no negated class, no class or code escape (Python's `re` reads `\\d` `\\s` `\\w` as
    Unicode classes)."""
    anchored = pattern.startswith("^") and pattern.endswith("$")  # `pattern` is a search, not a match
    if not anchored or not pattern.isascii() or "[^" in pattern or _WIDE_ESCAPES.search(pattern):
        return False
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "." and not in_class:
            return False
    return True


def max_json_bytes(schema: JsonSchema) -> int | None:
    """The largest JSON text (compact, ASCII-escaped) a valid instance can be; None if unbounded."""
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    # A valid instance satisfies the schema's own keywords and its oneOf/anyOf, so either bound holds.
    bounds = [b for b in (_alternatives_bound(schema), _own_bound(schema)) if b is not None]
    return min(bounds) if bounds else None


def _alternatives_bound(schema: JsonSchema) -> int | None:
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if not alternatives:
        return None
    sizes = [max_json_bytes(s) for s in alternatives]
    return None if None in sizes else max(s for s in sizes if s is not None)


def _own_bound(schema: JsonSchema) -> int | None:
    kind = schema.get("type")
    if kind == "string":
        if "maxLength" not in schema:
            return None
        # Escaped, a non-ASCII code point costs up to 12 bytes (a surrogate pair: two six-byte
        # \u escapes), a printable one 1 and CR, LF, tab, quote or backslash 2.
        per_char = 2 if _printable_ascii(schema.get("pattern", ".")) else 12
        return 2 + int(schema["maxLength"]) * per_char
    if kind == "integer":
        if "maximum" not in schema or "minimum" not in schema:
            return None
        return max(len(str(schema["maximum"])), len(str(schema["minimum"])))
    if kind == "boolean":
        return 5
    if kind == "array":
        item = max_json_bytes(schema.get("items", {}))
        return None if item is None or "maxItems" not in schema else 2 + schema["maxItems"] * (item + 1)
    if kind == "object":
        if schema.get("additionalProperties", True) is not False:
            return None
        total = 2
        for name, sub in schema.get("properties", {}).items():
            size = max_json_bytes(sub)
            if size is None:
                return None
            total += len(json.dumps(name)) + 2 + size
        return total
    return None


# -- checks before the handler --------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _ecma(pattern: str) -> re.Pattern[str]:
    """`pattern` as clients read it (ECMA-262, JSON Schema 2020-12 6.4): a final `$` is the end
    of the text, where Python's `$` also matches before a final newline ("AB\\n")."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: object, schema: JsonSchema
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not _ecma(pattern).search(instance):
        yield jsonschema.ValidationError(f"does not match {pattern!r}")


# types-jsonschema leaves `extend` untyped.
Validator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _pattern}
)


def _where(err: jsonschema.ValidationError, root: str) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(err.path))
    return f"field {path!r}" if path else root


def _worded(err: jsonschema.ValidationError, root: str) -> str:
    """One line naming the field and the rule, never echoing the (possibly large or secret) value."""
    where, rule, schema = _where(err, root), err.validator, err.schema
    value: Any = err.validator_value
    if rule == "type":
        return f"{where} must be of type {value}"
    if rule == "enum":
        return f"{where} must be one of: {', '.join(map(str, value))}"
    if rule == "pattern":
        what = schema.get("description", "text") if isinstance(schema, dict) else "text"
        return f"{where} is not valid: expected {what}"
    if rule in ("maxLength", "minLength"):
        return f"{where} must be {'at most' if rule == 'maxLength' else 'at least'} {value} characters"
    if rule in ("maxItems", "minItems"):
        return f"{where} must hold {'at most' if rule == 'maxItems' else 'at least'} {value} items"
    if rule in ("maximum", "minimum"):
        return f"{where} must be {'at most' if rule == 'maximum' else 'at least'} {value}"
    if rule == "oneOf":
        what = schema.get("description", "one of the documented forms") if isinstance(schema, dict) else ""
        return f"{where} must be exactly one of: {what}"
    return f"{where}: {err.message}"[:300]


def check(validator: Any, instance: object, root: str) -> None:
    """RequestError (400) naming the first broken rule when the instance does not match."""
    err = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if err is not None:
        raise RequestError(_worded(err, root))


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; RFC 8259 does not


async def read_json(request: Request, limit: int) -> object:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLargeError(f"request body over {limit} bytes")
    try:
        return json.loads(body, parse_constant=_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RequestError("request body is not JSON (or nests too deeply)") from None


def _checked(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    """The request handler the guard runs: path parameters and body validated, then `op.handler`."""
    body_validator = Validator(op.body) if op.body is not None else None
    param_validators = {name: Validator(s) for name, s in op.params.items()}

    async def endpoint(request: Request) -> Response:
        params = {name: str(request.path_params[name]) for name in op.params}
        for name, validator in param_validators.items():
            check(validator, params[name], f"path parameter {name!r}")
        body: dict[str, Any] = {}
        if body_validator is not None:
            data = await read_json(request, op.max_body)
            check(body_validator, data, "request body")
            assert isinstance(data, dict)  # every body schema is an object
            body = data
        return await op.handler(Call(request, params, body))

    return endpoint


def routes(operations: Sequence[Operation], guard: Guard, *, open_per_minute: int) -> list[Route]:
    """One Starlette route per path, dispatching on the method: Starlette's 405 then carries an
    `Allow` header listing every method of the path (RFC 9110 15.5.6), not just one route's.
    The guard runs first, so a caller without the role learns nothing about the request's form."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in operations:
        methods = by_path.setdefault(op.path, {})
        if op.method in methods:
            raise ValueError(f"{op.method} {op.path} is declared twice")
        limit = RateLimit(open_per_minute) if op.rate_limited else None  # one per route and process
        methods[op.method] = guard.wrap(_checked(op), role=op.role, limit=limit)
        if op.method == "GET":
            methods["HEAD"] = methods["GET"]  # Starlette answers HEAD with GET's handler

    def dispatch(methods: dict[str, Callable[[Request], Awaitable[Response]]]) -> Any:
        async def endpoint(request: Request) -> Response:
            return await methods[request.method](request)

        return endpoint

    return [Route(path, dispatch(methods), methods=list(methods)) for path, methods in by_path.items()]
