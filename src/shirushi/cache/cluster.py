"""Redis Cluster for the synchronous clients (`redis.mode = "cluster"`): client factory and slots.

The writers (presigner, revocation, `issuer add`), the responder's issuer reload and the health
checks use redis-py's `RedisCluster`, which follows MOVED and ASK redirections and refreshes its
slot map itself. It is typed as `redis.Redis` for its callers: it offers the same command methods
(`pipeline`, `get`, `zadd`, `hset`, ...), and the few places where the two differ (scripts in a
pipeline, pub/sub) ask `is_cluster`.

`redis.nodes` are seed nodes only: the client learns the whole cluster from the first one that
answers (CLUSTER SLOTS). Credentials and TLS come from `redis.url` when it is set
(`redis://user:password@/`, `rediss://...`); its host is ignored.

Slots are computed as Redis does (cluster spec, "Keys distribution model"): CRC16-XMODEM of the
key, or of its hash tag (the text between the first `{` and the next `}` when not empty), modulo
16384. `binascii.crc_hqx` is that CRC in C.
"""

from __future__ import annotations

import binascii
import urllib.parse
from typing import Final, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from shirushi.config_status import RedisSettings
from shirushi.errors import ServiceError

SLOTS: Final = 16384
# What a cluster client raises: RedisClusterException (no node reachable, no slot owner) is not
# a RedisError.
ERRORS: Final = (redis.RedisError, RedisClusterException)


def key_slot(key: bytes) -> int:
    """The cluster slot of `key` (hash tags honoured)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def connect(settings: RedisSettings) -> redis.Redis:
    """A cluster client over the seed `nodes`; commands time out after `settings.timeout`."""
    parts = urllib.parse.urlsplit(settings.url) if settings.url else None
    password = urllib.parse.unquote(parts.password) if parts is not None and parts.password else None
    username = urllib.parse.unquote(parts.username) if parts is not None and parts.username else None
    try:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.node_addresses],  # type: ignore[no-untyped-call]
            username=username,
            password=password,
            ssl=parts is not None and parts.scheme == "rediss",
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            # As writer.connect: fail fast, the outbox finishes the work later. The cluster-level
            # retries re-resolve the slot map, which is what a failover or a resharding needs.
            retry=Retry(NoBackoff(), 2),
            cluster_error_retry_attempts=3,
            # A responder must see the whole key space: a slot without an owner is an error, not a
            # silently missing record.
            require_full_coverage=True,
        )
    except ERRORS as exc:
        raise ServiceError(f"cannot reach the Redis Cluster through {', '.join(settings.nodes)}: {exc}") from None
    return cast(redis.Redis, client)


class Pinger:
    """`ping()` for a readiness check; the client is made at the first check, so that a
    cluster down at start-up fails the check instead of the process."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.client: redis.Redis | None = None

    def ping(self) -> bool:
        if self.client is None:
            self.client = connect(self.settings)
        return bool(self.client.ping())
