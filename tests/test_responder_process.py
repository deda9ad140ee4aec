"""The responder as a process: light imports, workers, SO_REUSEPORT, signals, exit statuses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support.ocsp_pki import (
    PKI,
    ResponderProcess,
    build_pki,
    free_port,
    get_path,
    http_exchange,
    ocsp_status,
    split_responses,
)

pytestmark = pytest.mark.e2e

# Backend code a keyless responder must never load (docs/standards.md, hot-path rule 5).
FORBIDDEN = (
    "shirushi.signing",
    "shirushi.store",
    "shirushi.ca",
    "shirushi.crl",
    "shirushi.presign",
    "shirushi.web",
    "shirushi.cli",
    "shirushi.asn1.ocsp",
    "pkcs11",
    "sqlalchemy",
    "alembic",
    "starlette",
    "uvicorn",
    "fastapi",
    "pkilint",
)


def test_responder_imports_no_backend_code() -> None:
    code = (
        "import json, sys\n"
        "import shirushi.responder, shirushi.responder.__main__, shirushi.responder.worker\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    modules = json.loads(done.stdout)
    assert "shirushi.responder.server" in modules and "uvloop" in modules  # the check sees imports
    loaded = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"), "http://127.0.0.1:1/")


@pytest.fixture
def stored(pki: PKI, redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    pki.store(client, 7)
    client.close()
    yield redis_url


def responder(pki: PKI, redis_url: str, directory: Path, **extra: str) -> ResponderProcess:
    env = {"SHIRUSHI_REDIS__URL": redis_url, "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem")}
    env.update({f"SHIRUSHI_{k.upper()}": v for k, v in extra.items()})
    return ResponderProcess(directory, env)


def good(port: int, pki: PKI) -> bool:
    raw = http_exchange(
        port, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % get_path(pki.request_der(7)).encode()
    )
    return ocsp_status(split_responses(raw)[0][2]) == "SUCCESSFUL/GOOD"


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_workers_restart_and_stop_cleanly(pki: PKI, stored: str, tmp_path: Path) -> None:
    server = responder(pki, stored, tmp_path, ocsp__workers="2").start()
    try:
        assert server.proc is not None
        workers = children(server.proc.pid)
        assert len(workers) == 2
        assert all(good(server.port, pki) for _ in range(6))
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            now = children(server.proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.05)
        time.sleep(0.3)
        assert all(good(server.port, pki) for _ in range(6))
        start = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - start < 5
        for pid in now:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        server.stop()


def test_sigint_stops_with_status_zero(pki: PKI, stored: str, tmp_path: Path) -> None:
    server = responder(pki, stored, tmp_path).start()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=10) == 0
    server.stop()
    assert "Traceback" not in server.log.read_text()


def test_two_instances_share_the_port(pki: PKI, stored: str, tmp_path: Path) -> None:
    port = free_port()
    first = responder(pki, stored, tmp_path / "a", ocsp__listen=f"127.0.0.1:{port}").start()
    second = responder(pki, stored, tmp_path / "b", ocsp__listen=f"127.0.0.1:{port}").start()
    try:
        assert good(port, pki)
        assert first.stop() == 0
        assert all(good(port, pki) for _ in range(5))  # the second one answers everything now
    finally:
        first.stop()
        assert second.stop() == 0


def run_cli(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
    env.update({"SHIRUSHI_DATA_DIR": str(tmp_path / "data"), "SHIRUSHI_METRICS__LISTEN": "", **env_extra})
    return subprocess.run(
        [sys.executable, "-m", "shirushi.responder"], env=env, capture_output=True, text=True, timeout=30
    )


def test_missing_issuers_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli({"SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{free_port()}"}, tmp_path)
    assert done.returncode == 6  # StateError
    assert done.stderr.count("\n") == 1 and "issuers.pem" in done.stderr and "shirushi init" in done.stderr


def test_port_taken_is_a_one_line_error(pki: PKI, tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        done = run_cli(
            {
                "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{port}",
                "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
            },
            tmp_path,
        )
    assert done.returncode == 8  # ServiceError
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr


def test_bad_redis_url_is_a_config_error(pki: PKI, tmp_path: Path) -> None:
    done = run_cli(
        {
            "SHIRUSHI_REDIS__URL": "http://example",
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
            "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{free_port()}",
        },
        tmp_path,
    )
    assert done.returncode == 2 and "redis.url" in done.stderr


def test_default_issuers_path_in_data_dir(pki: PKI, stored: str, tmp_path: Path) -> None:
    """With ocsp.issuers empty, {data_dir}/certs/issuers.pem (written by `init`) is used."""
    certs = tmp_path / "data" / "certs"
    certs.mkdir(parents=True)
    (certs / "issuers.pem").write_bytes((pki.directory / "issuers.pem").read_bytes())
    server = ResponderProcess(tmp_path, {"SHIRUSHI_REDIS__URL": stored}).start()
    try:
        assert good(server.port, pki)
    finally:
        assert server.stop() == 0


def test_a_lone_responder_serves_its_metrics(pki: PKI, stored: str, tmp_path: Path) -> None:
    port = free_port()
    server = responder(pki, stored, tmp_path, ocsp__workers="2", metrics__listen=f"127.0.0.1:{port}").start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert server.proc is not None
        assert len(children(server.proc.pid)) == 3  # two workers and the metrics listener
        with urllib.request.urlopen(base + "/readyz", timeout=10) as resp:
            assert json.loads(resp.read()) == {"ready": True, "checks": {"redis": "ok", "ocsp": "ok"}}
        assert all(good(server.port, pki) for _ in range(4))
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
                text = resp.read().decode()
            answered = sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith("shirushi_ocsp_requests_total{") and 'cert_status="good"' in line
            )
            if answered >= 4:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
