"""The responder's pipelined Redis client over a Redis Cluster (`redis.mode = "cluster"`). Network I/O.

`ClusterLink` has the interface of `resp.Link` that `lookup.Lookup` uses (`send`, `check`,
`close`, `conn`, `connects`), and keeps one `resp.Link` (one pipelined connection) per primary:
each command goes to the node that owns its key's slot (`cache.cluster.key_slot`; the hash tags of
`cache.records` put both CertIDs of a certificate in one slot). The slot table comes from
CLUSTER SLOTS, asked of any connected node at start, whenever a reply says the table is wrong,
and every `REFRESH_EVERY` seconds.

Redirections (cluster spec, "Redirection and resharding"):

* `-MOVED slot host:port`: the slot has a new owner. The entry is corrected at once, the command
  is resent there, and a full refresh follows (a resharding moves many slots).
* `-ASK slot host:port`: the slot is being migrated and this key already left. The command is
  resent to that node after ASKING, on the same connection; the table is not changed.
* `-TRYAGAIN`, `-CLUSTERDOWN`, a dead or stalled node: the request answers tryLater, the way a
  single server's failure does (`lookup.py`), and the table is refreshed, which is how the
  responder learns of a failover (the promoted replica then owns the slots).

A command follows at most `MAX_REDIRECTS` redirections, then answers tryLater.

Reads go to primaries only; `redis.read_replicas` is not used in cluster mode: a replica may
not yet hold a revoked record whose invalidation the responder has already received, and the
L1 cache would keep the older one.

`ClusterSubscriber` keeps the L1 cache honest over sharded pub/sub (SSUBSCRIBE): the writers
SPUBLISH each changed key (`cache/writer.py`) on the invalidation channel, which Redis delivers
from the shard that owns the channel's slot; the subscriber connects to that shard's primary.
When the channel's slot moves, Redis ends the subscription (`sunsubscribe`) and the subscriber
drops the L1 cache and resubscribes at the new owner, as it does when its connection breaks.
"""

from __future__ import annotations

import asyncio
import binascii
import copy
import logging
from collections.abc import Callable
from typing import Final

from shirushi.cache import records
from shirushi.cache.cluster import SLOTS, key_slot
from shirushi.responder import resp, respwire
from shirushi.responder.address import Fixed
from shirushi.responder.lookup import L1, Subscriber
from shirushi.responder.respwire import FAILED, Reply, RespError

log = logging.getLogger("shirushi.responder")

MAX_REDIRECTS: Final = 3
REFRESH_EVERY: Final = 5.0  # seconds: a failover is noticed within this even with no traffic
REFRESH_GAP: Final = 0.1  # seconds: at most this often when replies say the table is stale
CLUSTER_SLOTS: Final = respwire.command(b"CLUSTER", b"SLOTS")
ASKING: Final = respwire.command(b"ASKING")

Node = tuple[str, int]


def command_key(cmd: bytes) -> bytes:
    """The first argument of a RESP-encoded command (`*N $len NAME $len KEY ...`)."""
    name_end = cmd.index(b"\r\n", cmd.index(b"\r\n", cmd.index(b"\r\n") + 2) + 2)  # after NAME
    length_end = cmd.index(b"\r\n", name_end + 2)
    size = int(cmd[name_end + 3 : length_end])
    return cmd[length_end + 2 : length_end + 2 + size]


def command_slot(cmd: bytes) -> int:
    """The slot of a RESP-encoded command's key (its first argument)."""
    if cmd.startswith(b"*2\r\n"):
        # The hot path, `GET key`: the key is the last argument and nothing before it holds a
        # brace, so its hash tag is the first {...} of the whole command (a third of the cost).
        start = cmd.find(b"{")
        if start > 0:
            end = cmd.find(b"}", start + 1)
            if end > start + 1:
                return binascii.crc_hqx(cmd[start + 1 : end], 0) % SLOTS
    return key_slot(command_key(cmd))


def parse_redirect(message: bytes) -> tuple[int, Node] | None:
    """`MOVED 3999 127.0.0.1:6381` / `ASK ...` -> (slot, (host, port)); None if malformed."""
    parts = message.split(b" ")
    if len(parts) != 3:
        return None
    host, sep, port = parts[2].rpartition(b":")
    if not sep or not parts[1].isdigit() or not port.isdigit():
        return None
    slot = int(parts[1])
    if slot >= SLOTS:
        return None
    return slot, (host.decode("ascii", "replace").strip("[]"), int(port))


def parse_slots(value: Reply, asked: Node) -> list[tuple[int, int, Node]] | None:
    """A CLUSTER SLOTS reply -> [(first slot, last slot, primary)]; None if malformed.

    An empty host means "the node you asked" (Redis 7 `cluster-preferred-endpoint-type`)."""
    if not isinstance(value, list):
        return None
    out = []
    for entry in value:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[2], list) and len(entry[2]) >= 2):
            return None
        first, last, (host, port, *_) = entry[0], entry[1], entry[2]
        if not (isinstance(first, int) and isinstance(last, int) and isinstance(port, int) and isinstance(host, bytes)):
            return None
        if not 0 <= first <= last < SLOTS:
            return None
        out.append((first, last, (host.decode("ascii", "replace") or asked[0], port)))
    return out


class ClusterLink:
    """Per-slot routing over one pipelined `resp.Link` per primary."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seeds: list[Node], template: resp.Address, timeout: float
    ) -> None:
        self.loop = loop
        self.seeds = seeds
        self.template = template
        self.timeout = timeout
        self.links: dict[Node, resp.Link] = {}
        self.slots: list[resp.Link | None] = [None] * SLOTS
        self.covered = False  # every slot has an owner
        self._refreshing = False
        self._stale = True
        self._last_refresh = -REFRESH_EVERY
        self._retired_connects = 0
        self.redirects = 0  # MOVED and ASK followed
        self.refreshes = 0  # slot tables installed

    # The interface Lookup uses.

    @property
    def conn(self) -> resp.Connection | None:
        """A connection when every slot has a connected owner (Lookup.start_and_wait)."""
        if not self.covered:
            return None
        found = None
        for link in self.links.values():
            if link.conn is None:
                return None
            found = link.conn
        return found

    @property
    def connects(self) -> int:
        return self._retired_connects + sum(link.connects for link in self.links.values())

    def kick(self) -> None:
        self.check(self.loop.time())

    def send(self, cmd: bytes, callback: resp.Callback) -> bool:
        link = self.slots[command_slot(cmd)]
        if link is None:
            self._mark_stale()
            return False
        if link.send(cmd, self._follow(cmd, callback, 0)):
            return True
        self._mark_stale()  # its owner is down: ask for the table until a replica took over
        return False

    def check(self, now: float) -> None:
        for link in list(self.links.values()):
            link.check(now)
        if not any(link.conn is not None for link in self.links.values()):
            for seed in self.seeds:  # nothing up: start again from the seeds
                self._link(seed).kick()
        if not self._refreshing and (
            (self._stale and now - self._last_refresh >= REFRESH_GAP) or now - self._last_refresh >= REFRESH_EVERY
        ):
            self._refresh(now)

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    # Routing.

    def address_of(self, slot: int) -> resp.Address | None:
        link = self.slots[slot]
        return None if link is None else target_of(link)

    def _follow(self, cmd: bytes, callback: resp.Callback, hops: int) -> resp.Callback:
        def on_reply(value: Reply) -> None:
            if isinstance(value, RespError):
                message = value.message
                if message.startswith((b"MOVED ", b"ASK ")) and hops < MAX_REDIRECTS:
                    if self._redirect(cmd, callback, hops, message):
                        return
                elif message.startswith((b"TRYAGAIN", b"CLUSTERDOWN")):
                    self._mark_stale()
            elif value is FAILED:
                self._mark_stale()
            callback(value)

        return on_reply

    def _redirect(self, cmd: bytes, callback: resp.Callback, hops: int, message: bytes) -> bool:
        target = parse_redirect(message)
        if target is None:
            return False
        slot, node = target
        link = self._link(node)
        self.redirects += 1
        if message.startswith(b"MOVED "):
            self.slots[slot] = link
            self._mark_stale()
        elif not link.send(ASKING, _ignore):
            return False
        return link.send(cmd, self._follow(cmd, callback, hops + 1))

    def _link(self, node: Node) -> resp.Link:
        link = self.links.get(node)
        if link is None:
            address = copy.copy(self.template)
            address.path, address.host, address.port, address.db = None, node[0], node[1], 0
            link = resp.Link(self.loop, address, self.timeout, name=f"redis {node[0]}:{node[1]}", on_up=self._up)
            self.links[node] = link
            link.kick()
        return link

    def _up(self, conn: resp.Connection) -> None:
        # The first connection (or one after an outage) asks for the table without waiting for
        # the next check(): a worker starting up answers once the table is known.
        if self._stale and not self._refreshing:
            self.loop.call_soon(self._refresh, self.loop.time())

    def _mark_stale(self) -> None:
        self._stale = True

    def _refresh(self, now: float) -> None:
        up = next(((node, link) for node, link in self.links.items() if link.conn is not None), None)
        if up is None:
            return
        node, link = up
        self._refreshing = True
        self._last_refresh = now

        def on_slots(value: Reply) -> None:
            self._refreshing = False
            table = parse_slots(value, node)
            if table is None:
                # A lost connection is retried quietly (Link logs it); a CLUSTERDOWN is a cluster
                # mid-failover. Anything else is worth a line.
                if value is not FAILED and not (
                    isinstance(value, RespError) and value.message.startswith(b"CLUSTERDOWN")
                ):
                    log.warning("redis cluster: unusable CLUSTER SLOTS reply from %s:%d", *node)
                return
            self._install(table)

        if not link.send(CLUSTER_SLOTS, on_slots):
            self._refreshing = False

    def _install(self, table: list[tuple[int, int, Node]]) -> None:
        slots: list[resp.Link | None] = [None] * SLOTS
        for first, last, node in table:
            link = self._link(node)
            slots[first : last + 1] = [link] * (last - first + 1)
        self.slots = slots
        self.covered = all(slots)
        self._stale = not self.covered
        self.refreshes += 1
        owners = {id(link) for link in slots if link is not None}
        for node, link in list(self.links.items()):
            if id(link) not in owners:
                # A node that owns nothing now (a replica seed, a failed primary, a drained
                # one): its commands in flight answer tryLater.
                self._retired_connects += link.connects
                link.close()
                del self.links[node]


def target_of(link: resp.Link) -> resp.Address:
    """The one node a cluster link connects to (each link has a fixed address)."""
    locator = link.locator
    assert isinstance(locator, Fixed)
    return locator.address


def _ignore(value: Reply) -> None:
    pass


class ClusterSubscriber(Subscriber):
    """The invalidation subscription over sharded pub/sub, at the primary owning the channel."""

    def __init__(self, loop: asyncio.AbstractEventLoop, router: ClusterLink, timeout: float, l1: L1) -> None:
        super().__init__(loop, Fixed(router.template), timeout, l1)
        self.router = router
        self.slot = key_slot(records.INVALIDATE_CHANNEL.encode())
        self.link.name = "redis cluster subscription"

    def start(self) -> None:
        self.check(self.loop.time())  # connects once the router knows the channel's owner

    def _up(self, conn: resp.Connection) -> None:
        conn.send_push(respwire.command(b"SSUBSCRIBE", self.channel))

    def _push(self, value: Reply) -> None:
        if isinstance(value, list) and len(value) >= 2:
            kind = value[0]
            if kind == b"smessage" and len(value) == 3:
                if isinstance(value[2], bytes):
                    self.l1.invalidate(value[2])
            elif kind == b"ssubscribe" and value[1] == self.channel:
                self.l1.set_alive(True)
            elif kind == b"sunsubscribe":
                # The channel's slot moved (resharding, failover): messages may now be published
                # where this connection does not listen.
                log.warning("invalidation channel moved; in-process cache bypassed until resubscribed")
                self.l1.set_alive(False)
                self.router._mark_stale()
                self._reconnect()
            return
        if isinstance(value, RespError):
            log.warning("redis cluster subscription: %s", value.message.decode("utf-8", "replace"))
            self.router._mark_stale()
            self._reconnect()

    def _reconnect(self) -> None:
        if self.link.conn is not None:
            self.link.conn.abort()

    def check(self, now: float) -> None:
        address = self.router.address_of(self.slot)
        current = target_of(self.link)
        if address is not None and (address.host, address.port) != (current.host, current.port):
            if self.link.conn is not None:
                log.info("invalidation channel now at %s:%d; resubscribing", address.host, address.port)
                self.l1.set_alive(False)
                self.link.conn.abort()
            self.link.locator = Fixed(address)
        if address is None and self.link.conn is None:
            return  # the table is not known yet: no one to subscribe to
        super().check(now)


def cluster_lookup_parts(
    loop: asyncio.AbstractEventLoop, seeds: list[Node], template: resp.Address, timeout: float
) -> Callable[[L1], tuple[ClusterLink, ClusterSubscriber]]:
    """For `Lookup`: the router, and a factory of the subscriber over the same table."""
    router = ClusterLink(loop, seeds, template, timeout)

    def parts(l1: L1) -> tuple[ClusterLink, ClusterSubscriber]:
        return router, ClusterSubscriber(loop, router, timeout, l1)

    return parts
