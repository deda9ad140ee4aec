"""Load test for a Shirushi OCSP responder, for operators: a mix of GET and POST requests.

Give it DER OCSP requests for certificates the responder knows, made with stock openssl:

    openssl ocsp -issuer issuing.pem -cert leaf.pem -no_nonce -reqout req1.der
    openssl ocsp -issuer issuing.pem -sha256 -cert leaf.pem -no_nonce -reqout req2.der

`scripts/setup --dev` installs locust into `.venv`; `scripts/demo` prints a ready command for its
sample certificate. Run headless, bounded in time (the only way this file should be run against
anything that is not yours: ask first, and never point it at a public responder):

    .venv/bin/locust -f bench/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8080 --ocsp-requests req1.der,req2.der [--post-share 0.2] \\
        [--csv out/ocsp]

Each GET uses the RFC 6960 A.1 / RFC 5019 form: one '/' then the URL-encoded base64 of the DER
request ('/', '+' and '=' percent-encoded), so the path never starts with '//' (which HTTP
clients, locust's among them, take for a host). A reply counts as a success only when it is HTTP 200 with
`Content-Type: application/ocsp-response` and a *successful* OCSPResponse; tryLater,
unauthorized and the other error statuses are reported as failures by name.
`--ocsp-requests` may also come from the OCSP_REQUESTS environment variable. A missing,
unreadable or invalid request file stops the run with one line and exit status 2.
"""

from __future__ import annotations

import base64
import os
import random
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from cryptography.x509 import ocsp
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser

_STATUS = {
    0: "successful",
    1: "malformedRequest",
    2: "internalError",
    3: "tryLater",
    5: "sigRequired",
    6: "unauthorized",
}
_requests: list[bytes] = []
MAX_REQUEST_BYTES = 8192  # the responder's default ocsp.max_request_bytes


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--ocsp-requests",
        default=os.environ.get("OCSP_REQUESTS", ""),
        help="comma-separated DER OCSP request files (openssl ocsp -reqout)",
    )
    parser.add_argument("--post-share", type=float, default=0.2, help="fraction of requests sent as POST")


@events.init.add_listener
def _load(environment: Any, **_: Any) -> None:
    names = [n.strip() for n in (environment.parsed_options.ocsp_requests or "").split(",") if n.strip()]
    try:
        if not names:
            raise ValueError("give --ocsp-requests FILE[,FILE...] (DER requests from `openssl ocsp -reqout`)")
        _requests.extend(read_request(Path(n)) for n in names)
    except ValueError as exc:
        # One line and a non-zero exit, not a traceback per user (locust logs handler errors).
        print(f"locustfile: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def read_request(path: Path) -> bytes:
    """A DER OCSP request from `path`, checked, or ValueError saying what is wrong."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_REQUEST_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"--ocsp-requests {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"--ocsp-requests {path} is a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read --ocsp-requests {path}: {exc.strerror}") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(f"--ocsp-requests {path} is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        ocsp.load_der_ocsp_request(data)
    except ValueError:
        raise ValueError(
            f"--ocsp-requests {path} is not a DER OCSP request (make one with `openssl ocsp -reqout`)"
        ) from None
    return data


def get_path(request: bytes) -> str:
    """RFC 6960 A.1 / RFC 5019 GET path: '/' + URL-encoded base64 (never '//')."""
    return "/" + urllib.parse.quote(base64.b64encode(request).decode(), safe="")


def response_status(body: bytes) -> int | None:
    """responseStatus of a DER OCSPResponse (SEQUENCE { ENUMERATED, ... }), None if not one."""
    if len(body) < 5 or body[0] != 0x30:
        return None
    pos = 2 + (body[1] & 0x7F if body[1] & 0x80 else 0)
    if body[pos : pos + 2] != b"\x0a\x01" or len(body) <= pos + 2:
        return None
    return body[pos + 2]


class OCSPClient(FastHttpUser):
    """One relying party asking again and again, as a browser or a stapling server would."""

    def _check(self, response: Any) -> None:
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}")
        elif response.headers.get("Content-Type") != "application/ocsp-response":
            response.failure(f"Content-Type {response.headers.get('Content-Type')!r}")
        else:
            status = response_status(response.content or b"")
            if status != 0:
                response.failure(_STATUS.get(status, "not an OCSPResponse") if status is not None else "not DER")
            else:
                response.success()

    @task
    def ask(self) -> None:
        request = random.choice(_requests)
        if random.random() < self.environment.parsed_options.post_share:
            with self.client.post(
                "/",
                data=request,
                headers={"Content-Type": "application/ocsp-request"},
                name="POST /",
                catch_response=True,
            ) as response:
                self._check(response)
            return
        with self.client.get(get_path(request), name="GET /{base64}", catch_response=True) as response:
            self._check(response)
