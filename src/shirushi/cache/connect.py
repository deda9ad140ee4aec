"""Which Redis to talk to, by `redis.mode`: the one place that dispatches on it. Does no I/O itself.

* `sync_client`: the redis-py client of the backend, the CLI, the responder's issuer reload and
  readiness checks. "single" is one server at `redis.url`; "sentinel" asks the sentinels in
  `redis.nodes` for the primary named `redis.sentinel_service` (redis-py's `Sentinel`, which
  re-resolves on every new connection and on a READONLY reply from a demoted primary), or for a
  replica when `for_reads` and `redis.read_replicas` allow it.
  "cluster" is redis-py's RedisCluster over the seed `redis.nodes` (`cache/cluster.py`).
* `hot_locator`: where the responder's own pipelined asyncio client (`responder/resp.py`)
  connects: a fixed address, or `responder/sentinel.py`'s locator, which resolves through the
  sentinels on each (re)connect only, so the hot path costs what it costs against one server.
  A cluster has no one address: its responders route per slot (`responder/cluster_client.py`).
* `cache_writer`: the writer of the backend and of each presign worker process, over a client
  made here.
* `replicas_to_wait`: how many replicas a revocation's write waits for (`WAIT`), so that a
  failover right after `revoke` returns cannot promote a replica that never saw it, and
  `wait_budget_ms` how long it may wait.

In sentinel mode `redis.url`, when it is a redis:// or rediss:// URL, gives only the password,
database and TLS of the data nodes (e.g. `redis://:secret@/0`); their addresses come from the
sentinels. The default unix:// URL (the embedded server) carries nothing and is ignored.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shirushi.config_status import RedisSettings
from shirushi.errors import ConfigError

if TYPE_CHECKING:
    from shirushi.cache.writer import CacheWriter
    from shirushi.responder.address import Locator


def _not_supported(settings: RedisSettings) -> ConfigError:
    return ConfigError(f'redis.mode = "{settings.mode}" is not supported by this version')


def _common(timeout: float) -> dict[str, Any]:
    # One quick retry, no backoff: the caller reports an unreachable Redis at once and the
    # outbox finishes the work later, rather than a command hanging in redis-py's back-off.
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 1)}


def data_node_options(url: str) -> dict[str, Any]:
    """Password, user name, database and TLS of the data nodes, from a redis:// URL (sentinel)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return {}
    query = urllib.parse.parse_qs(parts.query)
    out: dict[str, Any] = {}
    password = parts.password or query.get("password", [None])[0]
    if password:
        out["password"] = urllib.parse.unquote(password)
    if parts.username:
        out["username"] = urllib.parse.unquote(parts.username)
    db_text = parts.path.strip("/") or query.get("db", ["0"])[0]
    if not db_text.isdigit():
        raise ConfigError("redis.url: database must be a number")
    out["db"] = int(db_text)
    if parts.scheme == "rediss":
        out["ssl"] = True
    return out


def sync_client(settings: RedisSettings, url: str, *, for_reads: bool = False) -> redis.Redis:
    """A redis-py client for `settings` (`url` is Settings.redis_url: the embedded default applied).

    `for_reads`: the caller only reads (a responder), so with `read_replicas` a replica will do.
    """
    if settings.mode == "single":
        return redis.Redis.from_url(url, **_common(settings.timeout))
    if settings.mode == "sentinel":
        from redis.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.node_addresses,
            # Sentinels are asked once per new connection, bounded like every other peer.
            sentinel_kwargs={"socket_timeout": settings.timeout, "socket_connect_timeout": settings.timeout},
            **_common(settings.timeout),
            **data_node_options(url),
        )
        make = sentinel.slave_for if for_reads and settings.read_replicas else sentinel.master_for
        return cast(redis.Redis, make(settings.sentinel_service))  # type: ignore[no-untyped-call]
    if settings.mode == "cluster":
        from shirushi.cache import cluster

        return cluster.connect(settings)  # reads go to primaries too (docs/deploy.md, "Redis Cluster")
    raise _not_supported(settings)


def hot_locator(
    settings: RedisSettings, url: str, loop: asyncio.AbstractEventLoop, *, for_reads: bool = True
) -> Locator:
    """Where the responder's pipelined client connects (and reconnects) for `settings`."""
    from shirushi.responder.address import Address, Fixed

    if settings.mode == "single":
        return Fixed(Address(url))
    if settings.mode == "sentinel":
        from shirushi.responder.sentinel import SentinelLocator

        template = Address(url) if urllib.parse.urlsplit(url).scheme in ("redis", "rediss") else Address("redis://")
        return SentinelLocator(
            loop,
            settings.node_addresses,
            settings.sentinel_service,
            template,
            settings.timeout,
            replicas=for_reads and settings.read_replicas,
        )
    if settings.mode == "cluster":
        raise ConfigError('redis.mode = "cluster" has no one address: responders route per slot (cluster_client.py)')
    raise _not_supported(settings)


def check(settings: RedisSettings, url: str) -> None:
    """Raise ConfigError now for a mode or URL that every later connection would refuse."""
    from shirushi.responder.address import Address

    if settings.mode == "single":
        Address(url)
    elif settings.mode == "sentinel":
        data_node_options(url)
    elif settings.mode != "cluster":
        raise _not_supported(settings)


def cache_writer(settings: RedisSettings, client: redis.Redis) -> CacheWriter:
    from shirushi.cache.writer import CacheWriter

    return CacheWriter(client, replicas_to_wait(settings), wait_budget_ms(settings))


def replicas_to_wait(settings: RedisSettings) -> int:
    """Replicas a revocation's write must reach before it counts as done (0: do not wait).

    With Sentinel a failover promotes a replica; Redis replicates asynchronously, so a revoked
    response acknowledged by the primary alone could vanish with it and the promoted replica
    would answer the old "good". Sentinel promotes the replica with the largest replication
    offset, so one acknowledgement is enough to carry the revocation over.
    """
    return 1 if settings.mode == "sentinel" else 0


def wait_budget_ms(settings: RedisSettings) -> int:
    """How long that `WAIT` may block on the server: half of `redis.timeout`.

    The WAIT's reply must reach us inside the client's socket timeout; with the whole timeout a
    WAIT that runs out answers just as the socket gives up, and the caller sees "Timeout reading
    from socket" instead of how many replicas held the write.
    """
    return max(1, int(settings.timeout * 500))
