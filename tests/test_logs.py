"""The operational log: one line per event, text or JSON, from a real `serve`; never secrets."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shirushi import config, logs
from shirushi.backend import Backend
from shirushi.errors import ServiceError
from shirushi.schedules import Scheduler
from support.pki import make_csr, split_pem
from support.serving import Site

TOKEN = "log-test-token-7f3a9c"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logger = logging.getLogger(logs.LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "_shirushi_handler", False):
            logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_text_and_json_lines(captured: io.StringIO) -> None:
    at = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
    log = logging.getLogger("shirushi.test")
    logs.configure("text", "info", captured)
    log.info("crl published", extra={"issuer": "issuing-ca", "number": 7, "next_update": at, "path": "/a b"})
    log.debug("not shown at info")
    assert captured.getvalue() == (
        'shirushi: crl published issuer=issuing-ca number=7 next_update=2026-11-29T09:00:00Z path="/a b"\n'
    )
    captured.seek(0)
    captured.truncate()
    logs.configure("json", "info", captured)  # configuring again replaces the handler
    log.warning("job failed", extra={"job": "CRL", "dns_names": ["a.example", "b.example"]})
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["event"] == "job failed" and record["logger"] == "shirushi.test"
    assert record["job"] == "CRL" and record["dns_names"] == ["a.example", "b.example"]
    dt.datetime.fromisoformat(record["time"])


def test_scheduler_failures_are_one_line(captured: io.StringIO, tmp_path: Path) -> None:
    settings = config.load(None, environ={"SHIRUSHI_DATA_DIR": str(tmp_path)})
    logs.configure("json", "info", captured)

    def unavailable() -> None:
        raise ServiceError("redis at unix:///nowhere is unreachable")

    def broken() -> None:
        raise RuntimeError("unexpected\nsecond line")

    async def run() -> None:
        scheduler = Scheduler(Backend(settings))
        await scheduler.run_job("presign refresh", unavailable)
        await scheduler.run_job("CRL", broken)

    asyncio.run(run())
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first == {**first, "level": "warning", "event": "job failed", "job": "presign refresh"}
    assert "unreachable" in first["error"]
    assert second["level"] == "error" and second["job"] == "CRL"
    assert second["error"] == "RuntimeError: unexpected\nsecond line"  # one JSON line; no traceback at info
    assert "Traceback" not in captured.getvalue()


def _events(site: Site) -> list[dict[str, object]]:
    lines = [line for line in site.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line of the log is one JSON object
    return records


@pytest.mark.e2e
def test_serve_logs_json_events_without_secrets(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        SHIRUSHI_LOG__FORMAT="json",
        SHIRUSHI_API__TOKEN=TOKEN,
        SHIRUSHI_PKCS11__USER_PIN="98765432",
    )
    assert site.cli("init").returncode == 0
    # Make `serve` renew the OCSP signer at start-up: less than renew_before is left of it.
    site.env.update(SHIRUSHI_CA__OCSP_SIGNER_RENEW_BEFORE="400d", SHIRUSHI_CA__OCSP_SIGNER_VALIDITY_DAYS="500")
    (tmp_path / "req.pem").write_bytes(make_csr(["www.example.jp"]))
    with site.serving():
        issued = site.cli("issue", "--csr", str(tmp_path / "req.pem"))
        assert issued.returncode == 0, issued.stderr
        serial = format(split_pem(issued.stdout)[0].serial_number, "X")
        request = urllib.request.Request(
            f"{site.api_url}/api/v1/certificates/{serial}/revoke",
            data=json.dumps({"reason": "superseded"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    text = site.log()
    assert TOKEN not in text and "98765432" not in text
    events = _events(site)
    steps = [e.get("step") for e in events if e["event"] == "startup"]
    # In start-up order ("presign" appears only when the cache was complete: no full run then).
    assert [step for step in steps if step != "presign"] == [
        "embedded redis",
        "metrics",
        "hierarchy",
        "weak key lists",
        "outbox",
        "crl",
        "live signing",
        "responders",
        "control socket",
    ]
    assert any(e["event"] == "serving" and e["ocsp"] == site.ocsp_url for e in events)
    assert any(e["event"] == "ocsp signer renewed" for e in events), events
    assert any(e["event"] == "presign run" and e["run"] == "full" for e in events)
    crls = [e for e in events if e["event"] == "crl published"]
    assert {e["issuer"] for e in crls} == {"issuing-ca", "root"}
    revoked = [e for e in events if e["event"] == "certificate revoked"]
    assert revoked == [{**revoked[0], "serial": serial, "reason": "superseded"}], revoked
    # The CRL published for that revocation comes after it.
    after = events[events.index(revoked[0]) :]
    assert any(e["event"] == "crl published" and e["scheduled"] is False and e["issuer"] == "issuing-ca" for e in after)
    for e in events:
        assert {"time", "level", "logger", "pid", "event"} <= set(e), e
