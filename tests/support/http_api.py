"""Test helper: JSON calls to a running `serve`'s API, optionally from another loopback address
(the API rate-limits open routes per client address; 127.0.0.0/8 gives each test its own)."""

from __future__ import annotations

import http.client
import json
from typing import Any

from support.serving import Site


def call(
    site: Site,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of one request; `raw` sends bytes as they are."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", site.api_port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        answer = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    parsed = json.loads(payload) if payload else {}
    assert isinstance(parsed, dict), payload
    return resp.status, parsed, answer


def is_error(body: dict[str, Any]) -> bool:
    """The API's error shape: {"error": CODE, "detail": TEXT}."""
    return set(body) == {"error", "detail"} and all(isinstance(v, str) and v for v in body.values())
