"""Shared fixtures (a real redis-server and a real PostgreSQL server per test session) and markers.

Markers say what a test needs beyond the interpreter: `redis`, `postgres` and `hsm` come from the
fixtures it uses (set here), `oracle` (openssl, ocsptool, nginx, haproxy and other outside
programs) and `e2e` (`shirushi` processes) are set in the test modules. `scripts/test --fast`
deselects all five; under it, a test that starts a process without saying so fails, so the fast
subset stays pure and in-process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support.ocsp_pki import RedisProcess

pytest_plugins = ["support.softhsm"]  # the real SoftHSM2 token fixture (tests/support/softhsm.py)

FIXTURE_MARKS = {
    "redis_server": "redis",
    "postgres_server": "postgres",
    "softhsm": "hsm",
}
FAST = os.environ.get("SHIRUSHI_TEST_FAST") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = {FIXTURE_MARKS[name] for name in getattr(item, "fixturenames", ()) if name in FIXTURE_MARKS}
        for mark in sorted(needs):
            item.add_marker(mark)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (CI=true) a skip is a failure: every tool a test needs is installed by scripts/setup."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be: {report.longrepr}"


@pytest.fixture(autouse=FAST)
def _no_processes_in_fast_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `scripts/test --fast`: starting a process is an error naming the missing marker."""

    def refuse(self: subprocess.Popen[bytes], args: object, *rest: object, **kwargs: object) -> None:
        raise AssertionError(f"this test starts {args!r}: mark it `oracle` or `e2e` (tests/conftest.py)")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a unix socket; yields its URL (unix://...)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/setup installs it)")
    with RedisProcess(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before each test that uses it."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server on a unix socket in a temporary directory; yields a database URL.

    Run as the `postgres` system user (the server refuses root), as Debian's package creates it.
    """
    bindir = _postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (scripts/setup --dev installs it)")
    # Not under pytest's temporary root, which is private to root: the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="shirushi-pg-"))
    directory.chmod(0o755)
    data = directory / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "shirushi", "--no-sync"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            *as_postgres,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(directory),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://shirushi@/postgres?host={directory}"
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            with psycopg.connect(f"host={directory} user=shirushi dbname=postgres", autocommit=True) as conn:
                conn.execute("select 1")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("postgres did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL server for each test."""
    import uuid

    import psycopg

    host = postgres_server.split("host=")[1]
    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host={host} user=shirushi dbname=postgres", autocommit=True) as conn:
        conn.execute(f"create database {name}")
    yield f"postgresql://shirushi@/{name}?host={host}"
