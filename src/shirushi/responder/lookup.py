"""From a Plan to an answer: the in-process L1 cache, then one Redis GET. Does network I/O.

Outcomes (docs/standards.md, hot-path rule 3: a miss is a value):

* a record -> its `Answer` (DER plus prebuilt caching headers);
* no record, and a live-signing service on this host (`live_client.py`) -> its answer: the
  response it signed for a known serial (and wrote to Redis), `unauthorized` for a serial its
  store does not know (never issued, or expired and purged), `tryLater` over its budget, when it
  is down or slower than `ocsp.live_timeout`. Never a guess;
* no record, no live signer here, and the issuer's `complete` marker present -> `unauthorized`: the serial was never
  issued (or its record was purged). BR 4.9.10 forbids answering `good` for it and BR 7.2.2
  forbids the certificateHold trick of RFC 6960 2.2, and the responder holds no key to sign an
  `unknown`; RFC 9919 3.2.3 names `unauthorized` for exactly this case;
* no record, no marker -> `tryLater`: the presigner has not finished filling the cache;
* Redis down, stalled beyond the timeout, or a record past its nextUpdate -> `tryLater`, never a
  stale answer; an unreadable record -> `internalError`.

The L1 cache (measured in bench/RESULTS.md) keeps answers in process memory, but only while a
subscription to `records.INVALIDATE_CHANNEL` is alive: a presigner publishes the key of every
record it changes, the entry is dropped on receipt, and the whole cache is emptied and bypassed
the moment the subscription breaks or stops answering PINGs. An answer read from Redis is only
stored if no invalidation and no subscription change happened while the GET was in flight (a
generation counter), so a reply racing with a revocation cannot be cached stale. Entries also
expire at min(nextUpdate, refresh_by, now + a lifetime between l1_max_age / 2 and
l1_max_age, spread by key).

With `redis.mode = "cluster"` the Redis client and the subscription come from
`cluster_client.py` (routing by slot, sharded pub/sub); what is said here holds unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from shirushi.cache import livewire, records
from shirushi.responder import resp, respwire
from shirushi.responder.issuers import Plan
from shirushi.responder.live_client import ABSENT, LiveClient
from shirushi.responder.request import INTERNAL_ERROR, TRY_LATER, UNAUTHORIZED
from shirushi.responder.responses import Answer
from shirushi.responder.shards import Shards

log = logging.getLogger("shirushi.responder")

Result = Answer | int  # an answer, or an OCSP error status
Done = Callable[[Result], None]

PING: Final = respwire.command(b"PING")
PING_INTERVAL: Final = 1.0
# Error replies after which the node is left and the primary located again: a demoted primary
# (READONLY), one still loading its data, a replica that lost its primary (MASTERDOWN).
_LEAVE_ON: Final = (b"READONLY", b"LOADING", b"MASTERDOWN")


class L1:
    """Answers by Redis key, valid only while the invalidation subscription is alive.

    Bounded by bytes (`ocsp.cache_mb`): each entry counts `Answer.size` plus its key. Sharded
    (shards.py): a million entries in one dict would pause the worker each time it grows."""

    def __init__(self, max_bytes: int, max_age: int) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.entries: Shards[tuple[Answer, int]] = Shards()
        self.bytes = 0  # what the entries count against max_bytes
        self.alive = False
        # Bumped by every invalidation and every subscription change; see the module docstring.
        self.generation = 0
        self.hits = 0

    def get(self, key: bytes, now: int) -> Answer | None:
        if not self.alive:
            return None
        shard = self.entries.of(key)
        entry = shard.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            self._drop(shard, key)
            return None
        self.hits += 1
        return entry[0]

    def put(self, key: bytes, answer: Answer, now: int, generation: int) -> None:
        if not self.alive or generation != self.generation:
            return
        size = answer.size + len(key)
        if size > self.max_bytes:
            return
        # The lifetime is spread over [max_age / 2, max_age] by key: answers cached in one burst
        # (a cold start) come due over half a minute instead of all in the same second.
        lifetime = self.max_age - hash(key) % (self.max_age // 2 + 1)
        expires = min(answer.next_update, answer.refresh_by, now + lifetime)
        if expires <= now:
            return
        shard = self.entries.of(key)
        self._drop(shard, key)
        while self.bytes + size > self.max_bytes:
            # Evict the newest entry of the key's shard: O(1), where deleting the oldest again
            # and again makes next(iter(dict)) walk deleted slots. The established hot set stays
            # cached.
            victims = shard or next(m for m in self.entries.maps if m)
            old_key, (old, _) = victims.popitem()
            self.bytes -= old.size + len(old_key)
        shard[key] = (answer, expires)
        self.bytes += size

    def _drop(self, shard: dict[bytes, tuple[Answer, int]], key: bytes) -> None:
        entry = shard.pop(key, None)
        if entry is not None:
            self.bytes -= entry[0].size + len(key)

    def invalidate(self, key: bytes) -> None:
        self.generation += 1
        self._drop(self.entries.of(key), key)

    def set_alive(self, alive: bool) -> None:
        self.generation += 1
        self.entries.clear()
        self.bytes = 0
        self.alive = alive


class Subscriber:
    """Keeps the L1 cache honest: SUBSCRIBE to the invalidation channel, PING to prove liveness."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: resp.Locator, timeout: float, l1: L1) -> None:
        self.l1 = l1
        self.channel = records.INVALIDATE_CHANNEL.encode()
        self.link = resp.Link(
            loop,
            address,
            timeout,
            name="redis subscription",
            on_push=self._push,
            on_up=self._up,
            on_down=self._down,
        )
        self.loop = loop
        self.timeout = timeout
        self._last_ping = 0.0
        self._closing = False  # a shutdown drops the subscription on purpose: no warning

    def _up(self, conn: resp.Connection) -> None:
        conn.send_push(respwire.command(b"SUBSCRIBE", self.channel))

    def _down(self) -> None:
        if self.l1.alive and not self._closing:
            log.warning("invalidation subscription lost; in-process cache bypassed")
        self.l1.set_alive(False)

    def _push(self, value: respwire.Reply) -> None:
        if isinstance(value, list) and len(value) >= 2:
            kind = value[0]
            if kind == b"message" and len(value) == 3:
                data = value[2]
                if isinstance(data, bytes):
                    self.l1.invalidate(data)
            elif kind == b"subscribe" and value[1] == self.channel:
                self.l1.set_alive(True)
            # "pong" replies only prove liveness, which Connection already noted.
        elif isinstance(value, respwire.RespError):
            log.error("redis subscription: %s", value.message.decode("utf-8", "replace"))
            if self.link.conn is not None:
                self.link.conn.abort()
        # AUTH's "+OK" arrives here too and needs nothing.

    def start(self) -> None:
        self.link.kick()

    def check(self, now: float) -> None:
        """Periodically: PING, and declare the subscription dead when Redis stays silent."""
        conn = self.link.conn
        if conn is not None:
            if now - conn.last_progress > self.timeout + 1.0:
                log.warning("redis subscription silent for %.1f s; reconnecting", now - conn.last_progress)
                self.l1.set_alive(False)
                conn.abort()
                return
            if now - self._last_ping >= PING_INTERVAL:
                self._last_ping = now
                conn.send_push(PING)
        else:
            self.link.kick()

    def close(self) -> None:
        self._closing = True
        self.link.close()


class Route(Protocol):
    """What Lookup needs of its Redis client: `resp.Link`, or `cluster_client.ClusterLink`."""

    @property
    def conn(self) -> resp.Connection | None: ...

    @property
    def connects(self) -> int: ...

    def send(self, cmd: bytes, callback: resp.Callback) -> bool: ...

    def kick(self) -> None: ...

    def check(self, now: float) -> None: ...

    def close(self) -> None: ...


# Redis Cluster (responder/cluster_client.py): the router and the subscriber, given the L1.
ClusterParts = Callable[[L1], tuple[Route, Subscriber]]


class Lookup:
    """Plan -> Result: L1 first (when alive), then Redis."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: resp.Address | resp.Locator,
        timeout: float,
        l1_bytes: int = 256 << 20,
        l1_max_age: int = 300,
        live: LiveClient | None = None,
        cluster: ClusterParts | None = None,
    ) -> None:
        self.loop = loop
        self.now = 0  # Unix seconds, kept current by the worker's ticker
        self.l1 = L1(l1_bytes, l1_max_age)
        self.link: Route
        self.subscriber: Subscriber | None
        self.locator: resp.Locator | None = None  # a cluster routes per slot instead
        self.single: resp.Link | None = None  # the one link, when not a cluster
        if cluster is None:
            # Both links share the locator, so that they use the same node (responder/sentinel.py).
            self.locator = locator = resp.Fixed(address) if isinstance(address, resp.Address) else address
            self.link = self.single = resp.Link(loop, locator, timeout, name="redis")
            self.subscriber = Subscriber(loop, locator, timeout, self.l1) if l1_bytes > 0 else None
        else:
            self.link, subscriber = cluster(self.l1)
            self.subscriber = subscriber if l1_bytes > 0 else None
        self.live = live
        self.misses = 0  # Redis had no record
        self.failures = 0  # a Redis command failed or timed out
        self.l1_hits = 0
        self.l1_misses = 0

    def start(self) -> None:
        if self.locator is not None:
            self.locator.start()
        self.link.kick()
        if self.subscriber is not None:
            self.subscriber.start()

    async def start_and_wait(self, timeout: float) -> bool:
        """Connect, and wait up to `timeout` for Redis (and the subscription) to be up, so that
        a fresh worker does not answer tryLater to its first clients. False when Redis is down;
        the worker serves anyway (tryLater) and keeps reconnecting."""
        self.start()
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline:
            if self.link.conn is not None and (self.subscriber is None or self.l1.alive):
                return True
            await asyncio.sleep(0.005)
        return False

    def cached(self, plan: Plan) -> Answer | None:
        answer = self.l1.get(plan.key, self.now)
        if answer is None:
            self.l1_misses += 1
        else:
            self.l1_hits += 1
        return answer

    @property
    def connects(self) -> int:
        return self.link.connects

    def fetch(self, plan: Plan, done: Done) -> Result | None:
        """Ask Redis; `done(result)` is called later, or the result is returned now (not sent)."""
        generation = self.l1.generation

        def on_record(value: respwire.Reply) -> None:
            if isinstance(value, bytes):
                done(self._answer(plan, value, generation))
            elif value is None:
                self.misses += 1
                if self.live is not None:
                    status = self.live.ask(plan.key, on_live)
                    if status is None:
                        return  # on_live answers
                    if status != ABSENT:
                        done(TRY_LATER)
                        return
                ask_marker()
            else:  # FAILED or an error reply
                self.failures += 1
                self._after_error(value)
                done(TRY_LATER)

        def on_live(status: int, value: bytes) -> None:
            if status == livewire.OK:
                done(self._answer(plan, value, generation))
            elif status == livewire.UNKNOWN:
                done(UNAUTHORIZED)  # the store does not know it: RFC 9919 3.2.3
            elif status in (ABSENT, livewire.NOT_MINE):
                ask_marker()  # no signer here for this issuer: the rule without one
            else:
                done(TRY_LATER)

        def ask_marker() -> None:
            if not self.link.send(plan.complete_command, on_marker):
                done(TRY_LATER)

        def on_marker(value: respwire.Reply) -> None:
            if isinstance(value, bytes):
                done(UNAUTHORIZED)
            else:  # absent: the cache is still filling; FAILED or error: Redis trouble
                self._after_error(value)
                done(TRY_LATER)

        if not self.link.send(plan.get_command, on_record):
            self.failures += 1
            return TRY_LATER
        return None

    def _after_error(self, value: respwire.Reply) -> None:
        """An error reply that says this node cannot serve us now: locate another one."""
        # (A cluster node saying so is left to the slot table's refresh: cluster_client.py.)
        if self.single is not None and isinstance(value, respwire.RespError) and value.message.startswith(_LEAVE_ON):
            log.warning("redis: %s; looking for the primary again", value.message.decode("utf-8", "replace"))
            self.single.reroute()

    def _answer(self, plan: Plan, value: bytes, generation: int) -> Result:
        fields = records.unpack_fields(value)
        if fields is None:
            log.error("unreadable record at %s", plan.key.decode("ascii", "replace"))
            return INTERNAL_ERROR
        answer = Answer(*fields)
        if answer.next_update <= self.now:
            # Its TTL should have removed it; a clock step or a stuck writer left it. Clients
            # reject it anyway (RFC 9919 5), so say "later" rather than serve it.
            return TRY_LATER
        subscriber = self.subscriber
        # Cache only what was read from the node whose invalidations we receive (identity: the
        # locator hands out one object per chosen node); elsewhere a message can beat the data.
        # A cluster's writer announces only once every write is acknowledged (cache/writer.py).
        if subscriber is not None and (self.single is None or subscriber.link.at is self.single.at):
            self.l1.put(plan.key, answer, self.now, generation)
        return answer

    def check(self, now: float) -> None:
        if self.locator is not None:
            self.locator.check(now)
        self.link.check(now)
        if self.live is not None:
            self.live.check(now)
        if self.subscriber is not None:
            self.subscriber.check(now)

    def close(self) -> None:
        self.link.close()
        if self.live is not None:
            self.live.close()
        if self.subscriber is not None:
            self.subscriber.close()
        if self.locator is not None:
            self.locator.close()
