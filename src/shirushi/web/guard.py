"""The API's front door: token and role checks, rate limits on open routes, the audit record of
every authenticated call, and errors as JSON. Does I/O (the audit append, in the thread pool).

Each route is wrapped once, naming the role it needs ("issue", "revoke", "read") or none for
the open routes (policy 4.9.12 key-compromise reports, BR 4.9.3 problem reports), which may
carry a per-address rate limit instead. A call with a valid token gets its token's name (never
the token) in the audit log, whatever its outcome; a call without one is answered 401 and only
logged, so unauthenticated traffic cannot grow the audit log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shirushi.backend import Backend
from shirushi.errors import ShirushiError
from shirushi.web.auth import Caller, TokenTable
from shirushi.web.json_io import error, error_response
from shirushi.web.ratelimit import RateLimit

log = logging.getLogger("shirushi.api")

Handler = Callable[[Request], Awaitable[Response]]
CHALLENGE = 'Bearer realm="shirushi"'
INVALID = CHALLENGE + ', error="invalid_token"'


def caller_of(request: Request) -> Caller | None:
    """The caller the guard let in (None on open routes)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller


def requested_by(request: Request, what: str = "api") -> str:
    """Who asked, as the use cases' audit records say it: `api (token NAME)`."""
    caller = caller_of(request)
    return f"{what} (token {caller.name})" if caller else what


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Guard:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.tokens = TokenTable.from_settings(backend.settings.api)

    def wrap(self, handler: Handler, *, role: str | None, limit: RateLimit | None = None) -> Handler:
        async def endpoint(request: Request) -> Response:
            caller: Caller | None = None
            if role is not None:
                if not self.tokens:
                    return error(
                        403, "api_disabled", "set api.token, api.token_env or [[api.tokens]] to enable this route"
                    )
                caller = self.tokens.caller(request.headers.get("authorization", ""))
                if caller is None:
                    log.warning("API %s %s: missing or wrong bearer token", request.method, request.url.path)
                    # RFC 9110 11.6.1: a 401 carries the challenge (RFC 6750 3).
                    challenge = CHALLENGE if not request.headers.get("authorization") else INVALID
                    return error(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": challenge})
                request.state.caller = caller
                if role not in caller.roles:
                    response: Response = error(
                        403, "forbidden", f"token {caller.name!r} lacks the role {role!r} this route needs"
                    )
                    await self._audit(request, caller, response.status_code)
                    return response
            elif limit is not None:
                wait = limit.allow(client_address(request), time.monotonic())
                if wait is not None:
                    response = error(429, "rate_limited", f"too many requests from this address; retry in {wait:.0f} s")
                    response.headers["Retry-After"] = f"{wait:.0f}"
                    return response
            response = await self._run(handler, request)
            if caller is not None:
                await self._audit(request, caller, response.status_code)
            return response

        return endpoint

    async def _run(self, handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except ShirushiError as exc:
            return error_response(exc)
        except Exception as exc:  # never a traceback to a client; the log keeps the detail
            log.exception("API %s %s failed", request.method, request.url.path)
            return error(500, "internal", type(exc).__name__)

    async def _audit(self, request: Request, caller: Caller, status: int) -> None:
        """Policy 5.4.1: who called what, with which outcome; the token's name, never the token."""
        detail = {"token": caller.name, "method": request.method, "path": request.url.path, "status": status}
        try:
            await run_in_threadpool(self.backend.store.audit, self.backend.clock.now(), "api-call", detail)
        except Exception:  # the answer stands; the failure to record it is logged loudly
            log.exception("API call not recorded in the audit log: %s", detail)
