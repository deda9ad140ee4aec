"""POST /api/v1/revocations: many serials, one transaction, one CRL, OCSP before the answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from shirushi.backend import Backend
from shirushi.store import schema
from shirushi.web.api import create_app
from support.serving import free_port
from test_revocation_concurrency import WORKER, archived, backend_of, check_agreement, check_numbers, seed
from test_revocation_concurrency import env as env  # the fixture (SQLite and PostgreSQL)

TOKEN = "bulk-token"


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[dict[str, str]]:
    # Two presign workers and small batches: a bulk revocation signs over the worker processes.
    env.update({"SHIRUSHI_API__TOKEN": TOKEN, "SHIRUSHI_PRESIGN__WORKERS": "2", "SHIRUSHI_PRESIGN__BATCH": "40"})
    yield env


class Server:
    def __init__(self, backend: Backend) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(backend), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def post(self, path: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method="POST")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def test_bulk_revocation_sorts_serials_and_updates_ocsp_and_one_crl(api: dict[str, str]) -> None:
    env = api
    serials = seed(env, 150)
    b = backend_of(env)
    earlier = b.revoker.revoke(serials[0], "superseded").record
    numbers_before = sorted(archived(env))
    unknown = [0xABCDEF, 0x1234]
    body = {
        "serials": [format(s, "X") for s in serials] + [format(s, "x") for s in unknown] + ["0", ":", "1" * 41],
        "reason": "cessationOfOperation",
    }
    with Server(b) as server:
        status, result = server.post("/api/v1/revocations", body)
        assert status == 200, result
        assert sorted(result["revoked"]) == sorted(format(s, "X") for s in serials[1:])
        assert result["already_revoked"] == [format(earlier.serial, "X")]
        assert sorted(result["unknown"]) == sorted(format(s, "X") for s in unknown)
        assert result["invalid"] == ["0", ":", "1" * 41]  # hex, but no serial (RFC 5280 4.1.2.2)
        assert "pending" not in result
        # Again: everything is already revoked now, nothing new is published.
        status, again = server.post("/api/v1/revocations", {"serials": body["serials"][:5], "reason": "superseded"})
        assert status == 200 and again["revoked"] == [] and len(again["already_revoked"]) == 5
    assert check_agreement(b, serials) == set(serials)
    # One CRL for the whole batch (the first revocation made its own before).
    assert len(sorted(archived(env))) == len(numbers_before) + 1
    check_numbers(env, b, crashed=False)
    with b.store.engine.connect() as conn:
        audits = conn.execute(schema.audit.select().where(schema.audit.c.action == "revoke")).all()
    assert len(audits) == len(serials)
    b.close()


def test_bulk_revocation_bad_requests(api: dict[str, str]) -> None:
    env = api
    serials = seed(env, 2)
    b = backend_of(env)
    b.crls.generate("issuing-ca", scheduled=True)  # as `serve` does at start
    with Server(b) as server:
        # All refused by the route's schema (400) before anything is looked up.
        cases: list[tuple[Any, str]] = [
            ({"serials": ["A"] * 10_001, "reason": "superseded"}, "at most 10000"),
            ({"serials": "A1", "reason": "superseded"}, "'serials' must be of type array"),
            ({"serials": [1, 2], "reason": "superseded"}, "must be of type string"),
            ({"serials": [], "reason": "superseded"}, "at least 1"),
            ({"serials": ["A1", "zz"], "reason": "superseded"}, "'serials[1]' is not valid"),
            ({"serials": ["A1"], "reason": "certificateHold"}, "must be one of: unspecified"),
            ({"serials": ["A1"]}, "'reason' is a required property"),
            (b"{" * 10, "JSON"),
        ]
        for payload, detail in cases:
            status, err = server.post("/api/v1/revocations", payload)
            assert status == 400 and set(err) == {"error", "detail"}, (payload, err)
            assert detail in err["detail"], err
        status, _ = server.post("/api/v1/revocations", {"serials": ["A1"], "reason": "superseded"}, token=None)
        assert status == 401
    assert check_agreement(b, serials) == set()
    b.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_kill_during_bulk_revocation_then_restart(api: dict[str, str], shards: int) -> None:
    """kill -9 of a bulk revocation once its batch is committed (during the OCSP signing and the
    CRL of every shard); the restart's outbox drain completes it on every shard."""
    env = {**api, "SHIRUSHI_CRL__SHARDS": str(shards)}
    serials = seed(env, 400, shards=shards)
    b = backend_of(env)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "bulk", *(format(s, "x") for s in serials)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill it as soon as the batch is committed: during the OCSP and CRL follow-up.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rec = b.store.certificate(serials[-1])
        if rec is not None and rec.revoked_at is not None:
            break
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=30)
    assert b.drain_outbox() == []  # what `serve` does first on start
    revoked = check_agreement(b, serials, shards)
    assert revoked in (set(), set(serials))  # one transaction: all or nothing
    for shard in [0] if shards == 1 else range(1, shards + 1):
        check_numbers(env, b, crashed=True, shard=shard)
    b.close()
