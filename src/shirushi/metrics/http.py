"""The metrics listener: GET /metrics (Prometheus text), /healthz and /readyz (short JSON).

A small threaded HTTP server rather than an ASGI app, so that `shirushi responder` (which has
no web framework) serves it the same way as `serve`. Every connection has a socket timeout, a
request line and headers are bounded by http.server's own limits, and a readiness check that
hangs is bounded by the timeout of the client it uses (Redis, the database).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shirushi.config_values import parse_listen

log = logging.getLogger("shirushi.metrics")

PEER_TIMEOUT = 10.0  # seconds a scraper may take to send its request or read the answer

# name -> check; a check returns None when fine or a short reason. Run on every /readyz.
Checks = Mapping[str, Callable[[], str | None]]


def readiness(checks: Checks) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:  # a check that fails in any way means "not ready", never a 500
            problem = f"{type(exc).__name__}: {exc}"
        results[name] = "ok" if problem is None else problem
    return all(v == "ok" for v in results.values()), results


class MetricsServer:
    def __init__(self, listen: str, exposition: Callable[[], tuple[bytes, str]], checks: Checks) -> None:
        host, port = parse_listen(listen)
        handler = _handler(exposition, checks)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(exposition: Callable[[], tuple[bytes, str]], checks: Checks) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = PEER_TIMEOUT
        server_version = "shirushi"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = exposition()
                self._send(200, body, content_type)
            elif path == "/healthz":
                self._json(200, {"status": "alive"})
            elif path == "/readyz":
                ready, results = readiness(checks)
                self._json(200 if ready else 503, {"ready": ready, "checks": results})
            else:
                self._json(404, {"error": "not_found", "detail": "routes: /metrics, /healthz, /readyz"})

        def do_HEAD(self) -> None:
            self._json(405, {"error": "method_not_allowed", "detail": "use GET"}, allow=True)

        def do_POST(self) -> None:
            self._json(405, {"error": "method_not_allowed", "detail": "use GET"}, allow=True)

        def _json(self, code: int, doc: object, *, allow: bool = False) -> None:
            extra = {"Allow": "GET"} if allow else {}
            self._send(code, json.dumps(doc).encode() + b"\n", "application/json", extra)

        def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    return Handler


def port_accepts(listen: str, timeout: float = 1.0) -> Callable[[], str | None]:
    """A readiness check: the OCSP port accepts connections (its workers listen)."""
    import socket

    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

    def check() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            return f"{host}:{port}: {exc.strerror or exc}"

    return check


def redis_answers(client: Any) -> Callable[[], str | None]:
    """A readiness check: Redis answers PING (within the client's own timeout)."""

    def check() -> str | None:
        client.ping()
        return None

    return check
