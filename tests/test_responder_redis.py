"""The responder when Redis fails, and the in-process cache's invalidation contract."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shirushi.config import Settings
from shirushi.config_status import OCSPSettings, RedisSettings
from shirushi.responder import Options
from support.ocsp_pki import (
    PKI,
    RedisProcess,
    ResponderProcess,
    ThreadedResponder,
    build_pki,
    free_port,
    get_path,
    http_exchange,
    ocsp_status,
    split_responses,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"), "http://127.0.0.1:1/")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path / "redis") as server:
        yield server


def responder_for(pki: PKI, redis_url: str, directory: Path, timeout: str = "0.5") -> ResponderProcess:
    return ResponderProcess(
        directory,
        {
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_REDIS__TIMEOUT": timeout,
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
        },
    )


def ask(port: int, pki: PKI, serial: int) -> str:
    raw = http_exchange(
        port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % get_path(pki.request_der(serial)).encode()
    )
    status, _, body = split_responses(raw)[0]
    assert status == 200
    return ocsp_status(body)


def wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until predicate() is true; fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def test_redis_stopped_then_back(pki: PKI, private_redis: RedisProcess, tmp_path: Path) -> None:
    client = private_redis.client()
    pki.store(client, 11)
    with responder_for(pki, private_redis.url, tmp_path / "r") as server:
        assert ask(server.port, pki, 11) == "SUCCESSFUL/GOOD"
        private_redis.stop()
        # Cached or not, nothing is answered from memory once the connections are gone.
        wait_for(lambda: ask(server.port, pki, 11) == "TRY_LATER", 2.0)
        assert ask(server.port, pki, 12) == "TRY_LATER"
        private_redis.start()
        pki.store(private_redis.client(), 11)
        wait_for(lambda: ask(server.port, pki, 11) == "SUCCESSFUL/GOOD", 5.0)
        assert server.stop() == 0


def test_redis_frozen_gives_try_later_in_bounded_time(pki: PKI, private_redis: RedisProcess, tmp_path: Path) -> None:
    """A hung Redis (SIGSTOP) is a timeout, answered tryLater; the server recovers after SIGCONT."""
    client = private_redis.client()
    pki.store(client, 21)
    pki.store(client, 22)
    assert private_redis.proc is not None
    with responder_for(pki, private_redis.url, tmp_path / "r") as server:
        assert ask(server.port, pki, 21) == "SUCCESSFUL/GOOD"  # now in the in-process cache
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            assert ask(server.port, pki, 22) == "TRY_LATER"  # needs Redis: waits for the timeout
            assert time.monotonic() - start < 2.0
            # The cached answer goes too once the subscription misses its PINGs (timeout + 1 s).
            assert wait_for(lambda: ask(server.port, pki, 21) == "TRY_LATER", 4.0) < 4.0
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: ask(server.port, pki, 22) == "SUCCESSFUL/GOOD", 5.0)
        assert server.stop() == 0


def test_revocation_reaches_cached_answer(pki: PKI, redis_url: str, tmp_path: Path) -> None:
    """A publish on the invalidation channel drops the cached good at once (target < 100 ms)."""
    client = redis.Redis.from_url(redis_url)
    pki.store(client, 31)
    with responder_for(pki, redis_url, tmp_path / "r", timeout="2") as server:
        wait_for(lambda: ask(server.port, pki, 31) == "SUCCESSFUL/GOOD", 2.0)
        ask(server.port, pki, 31)  # certainly cached now
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        pki.store(client, 31, revoked_at=now, reason="keyCompromise")
        assert wait_for(lambda: ask(server.port, pki, 31) == "SUCCESSFUL/REVOKED", 1.0) < 0.5


def test_cache_dropped_when_subscription_dies(pki: PKI, redis_url: str, tmp_path: Path) -> None:
    """Without a live subscription nothing is served from memory: a change that was never
    published is still seen right after the subscription connection is killed."""
    client = redis.Redis.from_url(redis_url)
    pki.store(client, 41)
    with responder_for(pki, redis_url, tmp_path / "r", timeout="2") as server:
        assert ask(server.port, pki, 41) == "SUCCESSFUL/GOOD"
        ask(server.port, pki, 41)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        pki.store(client, 41, revoked_at=now, publish=False)
        # Unpublished, the cached good stays (that is what the channel is for)...
        assert ask(server.port, pki, 41) == "SUCCESSFUL/GOOD"
        # ...until the subscription breaks: the cache is emptied and bypassed.
        assert client.client_kill_filter(_type="pubsub") >= 1
        assert wait_for(lambda: ask(server.port, pki, 41) == "SUCCESSFUL/REVOKED", 1.0) < 1.0


def test_without_l1_every_answer_comes_from_redis(pki: PKI, redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    pki.store(client, 51)
    settings = Settings(
        data_dir=str(tmp_path),
        redis=RedisSettings(url=redis_url),
        ocsp=OCSPSettings(listen=f"127.0.0.1:{free_port()}", issuers=str(pki.directory / "issuers.pem")),
    )
    with ThreadedResponder(settings, Options(l1_bytes=0)) as server:
        wait_for(lambda: ask(server.port, pki, 51) == "SUCCESSFUL/GOOD", 2.0)
        pki.store(client, 51, revoked_at=dt.datetime.now(dt.UTC).replace(microsecond=0), publish=False)
        assert ask(server.port, pki, 51) == "SUCCESSFUL/REVOKED"
    client.close()


def test_slow_and_idle_peers_are_cut_off(pki: PKI, redis_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=str(tmp_path),
        redis=RedisSettings(url=redis_url),
        ocsp=OCSPSettings(listen=f"127.0.0.1:{free_port()}", issuers=str(pki.directory / "issuers.pem")),
    )
    options = Options(request_timeout=0.5, idle_timeout=0.7, linger=0.3)
    with ThreadedResponder(settings, options) as server:
        # Slowloris: half a request, then nothing.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
            slow.sendall(b"GET /MEIw HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            data = b""
            while chunk := slow.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - start < 2.5
        # Idle keep-alive connection: closed without a word.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
            start = time.monotonic()
            assert idle.recv(4096) == b""
            assert time.monotonic() - start < 2.5
        # A slow body is cut off as well.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow_body:
            slow_body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
            data = b""
            while chunk := slow_body.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 ")
