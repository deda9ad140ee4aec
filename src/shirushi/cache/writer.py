"""Write side of the response cache: pipelined SETs, the refresh schedule, invalidation. Redis I/O.

Besides the records (see records.py) the writer keeps, per issuer, a sorted set
`shirushi:ocsp:{ISSUER}:due` (hash-tagged like the `complete` marker) of serial -> Unix time
when its responses are due for re-signing.
The 24 h refresh takes what is due from it in batches, so it is resumable after a crash and spread
over the interval by jitter, with no scan of the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, cast

import redis

from shirushi.cache import records
from shirushi.cache.cluster import ERRORS, is_cluster
from shirushi.errors import ServiceError

log = logging.getLogger("shirushi.cache")

# Seconds before a cluster write is sent again after a connection error (`CacheWriter._run`).
RETRY_AFTER = 0.5


def due_key(issuer: str) -> str:
    return f"{records.PREFIX}{{{issuer}}}:due"


class Entry(NamedTuple):
    """One record to store: key, packed value, TTL in seconds.

    A tuple: a refill moves millions of them from the worker processes, and a tuple unpickles
    several times faster than a dataclass.
    """

    key: str
    value: bytes
    ttl: int


# Store each record unless Redis holds one with a higher status version: a refresh that read
# "good" just before a revocation committed must not overwrite the revoked response the
# revocation wrote meanwhile (revocation is final; no suspension, policy 4.9.13). Bytes 1..8
# (0-based) of a packed record are its big-endian status version (records.py), which compares as
# a string the way it compares as a number. KEYS are the records' keys; ARGV their values and
# TTLs, alternating. Returns how many were stored.
# SET NX first: in a refill after a cache loss nearly every key is absent, and one call instead
# of GETRANGE then SET saves redis-server about 1 us of the 5-6 it spends per record; a key that exists
# (the daily refresh, spread over the day) costs one call more (bench/RESULTS.md, "Refill
# pipeline").
_SET_UNLESS_NEWER = """
local stored = 0
for i, key in ipairs(KEYS) do
  local value, ttl = ARGV[2 * i - 1], ARGV[2 * i]
  if redis.call('SET', key, value, 'EX', ttl, 'NX') then
    stored = stored + 1
  elseif redis.call('GETRANGE', key, 1, 8) <= string.sub(value, 2, 9) then
    redis.call('SET', key, value, 'EX', ttl)
    stored = stored + 1
  end
end
return stored
"""

# Records per script call on one server. One call for many keys costs Redis about a fifth less
# CPU than a call per key, and the client 60% less (bench/RESULTS.md, "Refill pipeline"); the
# bound keeps a call short (well under a millisecond), since Redis answers nobody else meanwhile.
SCRIPT_KEYS = 128


class CacheWriter:
    """Writes through `client` (cache/connect.py makes it for the configured redis.mode).

    `wait_replicas` > 0 (Sentinel): an announced write (a revocation) ends with `WAIT`, and
    counts as done only once that many replicas hold it, within `wait_ms`; otherwise it raises
    ServiceError and the outbox writes it again (the compare-and-set makes that harmless).
    """

    def __init__(self, client: redis.Redis, wait_replicas: int = 0, wait_ms: int = 2000) -> None:
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms
        self._set = client.register_script(_SET_UNLESS_NEWER)
        # Redis Cluster (cache/cluster.py): the script goes as EVAL, since a cluster pipeline
        # does not load scripts and a promoted replica has an empty script cache; invalidations
        # go as SPUBLISH, sharded pub/sub (docs/deploy.md, "Redis Cluster").
        self.cluster = is_cluster(client)

    def _run(self, fill: Callable[[redis.client.Pipeline], None]) -> list[object]:
        """Queue commands with `fill` on a fresh pipeline and send them (one round trip per node).

        Cluster: a connection error once refreshes the slot map and sends them again. A
        long-lived client (`serve`'s) can still route a slot to a primary that died in a
        failover; redis-py's own retries come at once, before the map it rereads shows the
        promoted replica. Every command queued here may be sent twice: SETs are compare-and-set,
        ZADD and PUBLISH repeat harmlessly.
        """
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            fill(pipe)
            try:
                return cast(list[object], pipe.execute())
            except ERRORS as exc:
                retry = self.cluster and attempt == 1 and isinstance(exc, redis.ConnectionError | redis.TimeoutError)
                if not retry:
                    raise ServiceError(f"Redis write failed: {exc}") from None
                log.warning("redis cluster write failed; rereading the slot map", extra={"error": str(exc)})
            time.sleep(RETRY_AFTER)
            try:
                self.client.nodes_manager.initialize()  # type: ignore[attr-defined]
            except ERRORS as exc:
                raise ServiceError(f"Redis write failed: {exc}") from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def put(self, issuer: str, entries: Iterable[Entry], due: dict[int, int], *, announce: bool = False) -> None:
        """Store records and their next due times in one pipeline (one round trip).

        `announce` publishes each key on the invalidation channel so responders holding an
        in-process copy drop it at once (used on revocation).
        """
        entries = list(entries)
        keys = [entry.key for entry in entries]
        waits = announce and self.wait_replicas > 0

        def records_and_due(pipe: redis.client.Pipeline) -> None:
            # A cluster script's keys must share a slot: one record per call there.
            size = 1 if self.cluster else SCRIPT_KEYS
            for start in range(0, len(entries), size):
                part = entries[start : start + size]
                part_keys = [entry.key for entry in part]
                values = [arg for entry in part for arg in (entry.value, max(1, entry.ttl))]
                if self.cluster:
                    args = ("EVAL", _SET_UNLESS_NEWER, len(part_keys), *part_keys, *values)
                    pipe.execute_command(*args)  # type: ignore[no-untyped-call]
                else:
                    self._set(keys=part_keys, args=values, client=pipe)
            if due:
                pipe.zadd(due_key(issuer), {format(s, "x"): t for s, t in due.items()})
            if announce and not self.cluster:
                # One connection: Redis runs the SETs before the PUBLISHes.
                for key in keys:
                    pipe.publish(records.INVALIDATE_CHANNEL, key)
            if waits:
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)  # type: ignore[no-untyped-call]

        replies = self._run(records_and_due)
        if waits and not (isinstance(replies[-1], int) and replies[-1] >= self.wait_replicas):
            raise ServiceError(
                f"Redis write reached {replies[-1]} replicas of the {self.wait_replicas} a revocation waits for"
            )
        if announce and self.cluster and keys:
            # The records live on other nodes than the channel: announce only once every SET is
            # acknowledged, or a responder could reread and cache the old record.
            def invalidations(pipe: redis.client.Pipeline) -> None:
                for key in keys:
                    pipe.spublish(records.INVALIDATE_CHANNEL, key)

            self._run(invalidations)

    def forget(self, issuer: str, serials: Iterable[int]) -> None:
        """Stop refreshing these serials (expired certificates, RFC 9919 3.2.3)."""
        members = [format(s, "x") for s in serials]
        if members:

            def removal(pipe: redis.client.Pipeline) -> None:
                pipe.zrem(due_key(issuer), *members)

            self._run(removal)

    def due(self, issuer: str, now: int, limit: int) -> list[int]:
        try:
            members = self.client.zrangebyscore(due_key(issuer), "-inf", now, start=0, num=limit)
        except ERRORS as exc:
            raise ServiceError(f"Redis read failed: {exc}") from None
        return [int(m, 16) for m in cast(list[bytes], members)]

    def is_complete(self, issuer: str) -> bool:
        try:
            return bool(self.client.exists(records.complete_key(issuer)))
        except ERRORS as exc:
            raise ServiceError(f"Redis read failed: {exc}") from None

    def mark_complete(self, issuer: str, at: int) -> None:
        try:
            self.client.set(records.complete_key(issuer), str(at))
        except ERRORS as exc:
            raise ServiceError(f"Redis write failed: {exc}") from None

    def get(self, key: str) -> records.Record | None:
        try:
            value = self.client.get(key)
        except ERRORS as exc:
            raise ServiceError(f"Redis read failed: {exc}") from None
        return records.unpack(value) if isinstance(value, bytes) else None
