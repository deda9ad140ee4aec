"""One root exception for everything Shirushi refuses or fails to do.

Subclasses carry the data a caller needs; the edges (CLI exit codes, HTTP status, OCSP status)
map them in one place each. No I/O here.
"""

from __future__ import annotations


class ShirushiError(Exception):
    """Root of every error Shirushi raises on purpose. `str()` is one line for a user."""

    exit_code = 1
    http_status = 400
    code = "error"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ConfigError(ShirushiError):
    """The configuration file or an environment override is wrong."""

    exit_code = 2
    code = "config"


class InputError(ShirushiError):
    """Bad input from a user: unreadable file, bad CSR, bad argument. Over HTTP it is 422: the
    request had the documented form (the API checks that first, `web.operations`), its content
    is refused (RFC 9110 15.5.21)."""

    exit_code = 2
    http_status = 422
    code = "invalid"


class RequestError(InputError):
    """An HTTP request that does not have the documented form: not JSON, or not matching its
    schema (400)."""

    http_status = 400
    code = "bad_request"


class TooLargeError(RequestError):
    """An HTTP request body over its bound (413 Content Too Large, RFC 9110 15.5.14)."""

    http_status = 413
    code = "too_large"


class PolicyError(ShirushiError):
    """The request is well formed but the policy forbids it (key size, validity, reason); 422
    over HTTP."""

    exit_code = 3
    http_status = 422
    code = "policy"


class ArgumentError(PolicyError):
    """An argument of a request breaks a rule. `argument` is its name in the use case ("days",
    "at"); each edge names it its own way (a CLI flag, a JSON field) in front of `rule`."""

    def __init__(self, argument: str, rule: str) -> None:
        super().__init__(f"{argument} {rule}")
        self.argument = argument
        self.rule = rule


class LintError(PolicyError):
    """Pre-issuance linting (BR 4.3.1.2) found an ERROR or FATAL problem."""

    code = "lint"

    def __init__(self, findings: list[str]) -> None:
        super().__init__("pre-issuance lint refused the certificate: " + "; ".join(findings))
        self.findings = findings


class WeakKeyError(PolicyError):
    """The subscriber key is known to be weak (BR 6.1.1.3). `weakness` names the finding
    ("fermat", "roca", "debian-openssl", ...); `spki_sha256` identifies the key."""

    code = "weak_key"

    def __init__(self, weakness: str, explanation: str, spki_sha256: str) -> None:
        super().__init__(f"key refused: weak key ({weakness}): {explanation} (BR 6.1.1.3)")
        self.weakness = weakness
        self.explanation = explanation
        self.spki_sha256 = spki_sha256


class NotFoundError(ShirushiError):
    """The named object (certificate, serial) does not exist."""

    exit_code = 4
    http_status = 404
    code = "not_found"


class ConflictError(ShirushiError):
    """The operation conflicts with the current state (already revoked, key exists)."""

    exit_code = 5
    http_status = 409
    code = "conflict"


class StateError(ShirushiError):
    """Something the command needs is missing, e.g. `init` was not run."""

    exit_code = 6
    http_status = 503
    code = "state"


class SignerError(ShirushiError):
    """The key backend (files or PKCS#11 token) cannot sign or cannot be opened."""

    exit_code = 7
    http_status = 503
    code = "signer"


class ServiceError(ShirushiError):
    """An outside service (Redis, database) is unreachable or failed."""

    exit_code = 8
    http_status = 503
    code = "unavailable"


class ValidationError(PolicyError):
    """Domain validation or CAA (BR 3.2.2.4, 3.2.2.8) does not allow issuance for a name.

    `problem` is the RFC 8555 6.7 type the ACME server answers with ("caa", "unauthorized",
    "rejectedIdentifier", ...)."""

    http_status = 403
    code = "validation"

    def __init__(self, message: str, *, problem: str = "unauthorized", names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problem = problem
        self.names = names


class IntegrityError(ShirushiError):
    """Records do not verify (`archive verify`): a file's hash, the audit hash chain, or the
    database's audit rows differ from what an export recorded. `problems` lists each finding."""

    exit_code = 9
    code = "integrity"

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems
