"""Responders pick up a new issuer without a restart: from the Redis list of outside CAs within
`RELOAD_EVERY` seconds, at once on SIGHUP, and keep what they have while Redis cannot be read."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from shirushi.cache.records import ISSUERS_KEY
from shirushi.config import load
from shirushi.responder.reload import RELOAD_EVERY, IssuerSource
from support.ocsp_pki import PKI, ResponderProcess, build_pki, get_path, http_exchange, ocsp_status, split_responses

pytestmark = pytest.mark.e2e


def status(port: int, pki: PKI, serial: int = 0x42) -> str:
    raw = http_exchange(port, f"GET {get_path(pki.request_der(serial))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return ocsp_status(split_responses(raw)[0][2])


def test_new_issuer_from_redis_periodically_and_on_sighup(tmp_path: Path, redis_url: str) -> None:
    own = build_pki(tmp_path / "own", "http://127.0.0.1/")
    outside = [build_pki(tmp_path / f"outside{i}", "http://127.0.0.1/") for i in range(2)]
    client = redis.Redis.from_url(redis_url)
    env = {"SHIRUSHI_REDIS__URL": redis_url, "SHIRUSHI_OCSP__ISSUERS": str(own.directory / "issuers.pem")}
    with ResponderProcess(tmp_path / "r", env) as responder:
        assert status(responder.port, own) == "TRY_LATER"  # known issuer, cache not complete
        assert status(responder.port, outside[0]) == "UNAUTHORIZED"
        # Within the reload period, no signal.
        client.hset(ISSUERS_KEY, "first", (outside[0].directory / "issuing.pem").read_bytes())
        deadline = time.monotonic() + RELOAD_EVERY + 3
        while status(responder.port, outside[0]) == "UNAUTHORIZED":
            assert time.monotonic() < deadline, "the new issuer was not picked up"
            time.sleep(0.2)
        # SIGHUP: at once.
        client.hset(ISSUERS_KEY, "second", (outside[1].directory / "issuing.pem").read_bytes())
        assert responder.proc is not None
        responder.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 1.5
        while status(responder.port, outside[1]) == "UNAUTHORIZED":
            assert time.monotonic() < deadline, "SIGHUP did not reload the issuers"
            time.sleep(0.05)
        assert status(responder.port, own) == "TRY_LATER"
    client.close()


@pytest.mark.redis
def test_source_changes_only_when_something_changed(tmp_path: Path, redis_url: str) -> None:
    own = build_pki(tmp_path / "own", "http://127.0.0.1/")
    other = build_pki(tmp_path / "other", "http://127.0.0.1/")
    settings = load(
        None, {"SHIRUSHI_REDIS__URL": redis_url, "SHIRUSHI_OCSP__ISSUERS": str(own.directory / "issuers.pem")}
    )
    source = IssuerSource(settings)
    try:
        assert len(source.load()) == 1
        assert source.changed() is None
        redis.Redis.from_url(redis_url).hset(ISSUERS_KEY, "other", (other.directory / "issuing.pem").read_bytes())
        issuers = source.changed()
        assert issuers is not None and len(issuers) == 2
        assert source.changed() is None
        # Redis unreachable: keep the current issuers (None = no change).
        broken = IssuerSource(load(None, {"SHIRUSHI_REDIS__URL": "unix:///nonexistent.sock",
                                          "SHIRUSHI_OCSP__ISSUERS": str(own.directory / "issuers.pem")}))  # fmt: skip
        assert len(broken.load()) == 1 and broken.changed() is None
        broken.close()
    finally:
        source.close()
