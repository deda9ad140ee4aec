"""The redis.mode dispatch (cache/connect.py) and the pure parts of the Sentinel locator."""

from __future__ import annotations

import asyncio

import pytest

from shirushi.cache.connect import check, data_node_options, hot_locator, replicas_to_wait, sync_client
from shirushi.config_status import RedisSettings
from shirushi.errors import ConfigError
from shirushi.responder import resp
from shirushi.responder.respwire import FAILED
from shirushi.responder.sentinel import SentinelLocator, pick_replica

SENTINEL = RedisSettings(mode="sentinel", nodes=("127.0.0.1:26379", "127.0.0.1:26380"), sentinel_service="ca")
CLUSTER = RedisSettings(mode="cluster", nodes=("127.0.0.1:7000",))


def replica(ip: bytes, port: bytes, flags: bytes = b"slave", link: bytes = b"ok") -> list[bytes]:
    return [b"name", ip + b":" + port, b"ip", ip, b"port", port, b"flags", flags, b"master-link-status", link]


def test_pick_replica_skips_unhealthy_ones_and_keeps_the_one_in_use() -> None:
    replies = [
        replica(b"10.0.0.1", b"6379", flags=b"s_down,slave"),
        replica(b"10.0.0.2", b"6379", link=b"err"),
        replica(b"10.0.0.3", b"6379", flags=b"slave,disconnected"),
        replica(b"10.0.0.4", b"6380"),
        replica(b"10.0.0.5", b"6381"),
    ]
    assert {pick_replica(replies) for _ in range(50)} == {("10.0.0.4", 6380), ("10.0.0.5", 6381)}
    assert all(pick_replica(replies, ("10.0.0.5", 6381)) == ("10.0.0.5", 6381) for _ in range(20))
    assert all(pick_replica(replies, avoid={("10.0.0.5", 6381)}) == ("10.0.0.4", 6380) for _ in range(20))
    assert pick_replica(replies, ("10.0.0.5", 6381), {("10.0.0.5", 6381), ("10.0.0.4", 6380)}) is None
    assert pick_replica(replies[:3]) is None
    assert pick_replica(None) is None
    assert pick_replica([[b"ip"], b"junk", replica(b"10.0.0.6", b"x")]) is None


def test_role_checks() -> None:
    template = resp.Address("redis://:secret@ignored:1/3")
    primary = template.at("10.0.0.1", 6379, b"master")
    assert (primary.host, primary.port, primary.password, primary.db) == ("10.0.0.1", 6379, "secret", 3)
    assert primary.role_ok([b"master", 10, []]) and not primary.role_ok([b"slave", b"h", 1, b"connected", 5])
    follower = template.at("10.0.0.2", 6379, b"slave")
    assert follower.role_ok([b"slave", b"10.0.0.1", 6379, b"connected", 5])
    assert not follower.role_ok([b"slave", b"10.0.0.1", 6379, b"connect", -1])  # cut off from its primary
    assert not follower.role_ok(FAILED) and not follower.role_ok(None)
    assert primary.same_node(template.at("10.0.0.1", 6379, b"slave")) and not primary.same_node(follower)


def test_data_node_options() -> None:
    assert data_node_options("unix:///var/lib/shirushi/redis.sock") == {}
    assert data_node_options("rediss://user:p%40ss@/2") == {
        "password": "p@ss",
        "username": "user",
        "db": 2,
        "ssl": True,
    }
    assert data_node_options("redis://?password=x") == {"password": "x", "db": 0}
    with pytest.raises(ConfigError):
        data_node_options("redis:///zero")


def test_mode_dispatch() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(hot_locator(RedisSettings(), "unix:///x.sock", loop), resp.Fixed)
        located = hot_locator(SENTINEL, "unix:///x.sock", loop)
        assert isinstance(located, SentinelLocator) and located.sentinels == [
            ("127.0.0.1", 26379),
            ("127.0.0.1", 26380),
        ]
        assert not located.replicas
        with pytest.raises(ConfigError, match='"cluster" has no one address'):
            hot_locator(CLUSTER, "redis://127.0.0.1:7000", loop)
    finally:
        loop.close()
    check(CLUSTER, "redis://x")  # a cluster's seed nodes come from redis.nodes
    with pytest.raises(ConfigError):
        check(RedisSettings(), "http://x")
    assert replicas_to_wait(SENTINEL) == 1 and replicas_to_wait(RedisSettings()) == 0
    client = sync_client(SENTINEL, "redis://:pw@/1")  # makes no connection yet
    try:
        assert client.connection_pool.connection_kwargs["password"] == "pw"
        assert client.connection_pool.connection_kwargs["db"] == 1
    finally:
        client.close()
