"""RFC 8555 6.7 problem documents, and the mapping from Shirushi's errors to them. Pure."""

from __future__ import annotations

from typing import Any

from shirushi.errors import (
    ConflictError,
    InputError,
    LintError,
    NotFoundError,
    PolicyError,
    ShirushiError,
    ValidationError,
)

PREFIX = "urn:ietf:params:acme:error:"
# The HTTP status each type is answered with (RFC 8555 6.7 leaves most at 400).
STATUS = {
    "unauthorized": 403,
    "accountDoesNotExist": 400,
    "rateLimited": 429,
    "caa": 403,
    "orderNotReady": 403,
    "alreadyRevoked": 400,
    "serverInternal": 500,
    "externalAccountRequired": 403,
    "rejectedIdentifier": 400,
}


class Problem(Exception):
    """An ACME error answer: `type` without the URN prefix."""

    def __init__(
        self,
        type: str,
        detail: str,
        *,
        status: int | None = None,
        subproblems: list[Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(detail)
        self.type = type
        self.detail = detail
        self.status = status or STATUS.get(type, 400)
        self.subproblems = subproblems or []
        # RFC 8555 6.6: a rateLimited answer says when to come back (Retry-After, seconds).
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(max(1, self.retry_after))}

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": PREFIX + self.type, "detail": self.detail, "status": self.status}
        if self.subproblems:
            doc["subproblems"] = self.subproblems
        return doc


def from_error(exc: ShirushiError, *, csr: bool = False) -> Problem:
    """The ACME type of an error raised by the issuance path or the store."""
    if isinstance(exc, ValidationError):
        subs = [
            {"type": PREFIX + exc.problem, "detail": str(exc), "identifier": {"type": "dns", "value": n}}
            for n in exc.names
        ]
        return Problem(exc.problem, str(exc), subproblems=subs)
    if isinstance(exc, LintError | InputError) or (csr and isinstance(exc, PolicyError)):
        return Problem("badCSR" if csr else "malformed", str(exc))
    if isinstance(exc, PolicyError):
        return Problem("rejectedIdentifier", str(exc))
    if isinstance(exc, NotFoundError):
        return Problem("malformed", str(exc), status=404)
    if isinstance(exc, ConflictError):
        return Problem("alreadyRevoked", str(exc))
    return Problem("serverInternal", str(exc), status=503 if exc.http_status == 503 else 500)
