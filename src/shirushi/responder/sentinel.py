"""Finding the Redis primary (or a replica) through Redis Sentinel, for the hot path. Network I/O.

`SentinelLocator` is the `resp.Locator` of redis.mode = "sentinel". The links of one worker (the
lookup's and the invalidation subscription's) share it, so they use the same node: an
invalidation read from one node is only proof for answers read from that node. It asks a
sentinel (`SENTINEL get-master-addr-by-name`, and `SENTINEL replicas` with redis.read_replicas)
only when a link (re)connects and no node is chosen, never per command; the per-request cost is
what it is against a single server. A node stops being the choice when

* a connection to it fails or is lost, or its `ROLE` is not the expected one (`resp.Link`);
* a command gets READONLY / LOADING / MASTERDOWN (`lookup.py`);
* the sentinels announce `+switch-master` for our service (a subscription on one sentinel,
  moved to the next when it fails; after each (re)subscription the choice is checked again,
  since an announcement may have been missed meanwhile).

The Sentinel client rules followed are those of https://redis.io/docs/reference/sentinel-clients/:
ask the sentinels in turn, starting with the last one that answered; verify the role after
connecting; reconnect on a switch. When no sentinel answers, the last chosen node is tried again
(its role is still checked), so an outage of the sentinels alone does not stop the answers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection, Sequence
from typing import Final

from shirushi.responder import resp
from shirushi.responder.respwire import FAILED, Reply, RespError, command

log = logging.getLogger("shirushi.responder")

SWITCH: Final = b"+switch-master"
WATCH_PING_EVERY: Final = 1.0
# A replica that failed us (lost connection, not following its primary) is not chosen again for
# this long: the sentinels refresh what they know of replicas only every few seconds, and would
# name it again while it resynchronises after a failover.
AVOID_FOR: Final = 5.0
REPLICA_RECHECK: Final = 10.0  # seconds between looks for a replica while reading the primary
# Replica flags that rule it out (SENTINEL replicas reports them; docs: "flags").
_BAD_FLAGS: Final = frozenset((b"s_down", b"o_down", b"disconnected"))


class _Ring:
    """The sentinels as a `resp.Locator` for the watch link: the next one after a failure."""

    def __init__(self, owner: SentinelLocator) -> None:
        self.owner = owner

    async def locate(self) -> resp.Address:
        host, port = self.owner.sentinels[self.owner.first]
        return resp.Address(f"redis://{host}:{port}")

    def lost(self, address: resp.Address) -> None:
        self.owner.rotate()

    def follow(self, link: resp.Link) -> None:
        pass

    def start(self) -> None:
        pass

    def check(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


def _pairs(value: Reply) -> dict[bytes, bytes]:
    """A flat [key, value, ...] list (how Sentinel describes a node) as a dict."""
    if not isinstance(value, list):
        return {}
    return {
        k: v for k, v in zip(value[::2], value[1::2], strict=False) if isinstance(k, bytes) and isinstance(v, bytes)
    }


def pick_replica(
    replies: Reply, prefer: tuple[str, int] | None = None, avoid: Collection[tuple[str, int]] = ()
) -> tuple[str, int] | None:
    """A healthy replica from a `SENTINEL replicas` reply: `prefer` (the one in use) while it is
    healthy, else one at random (spreads the workers over the replicas), never one in `avoid`."""
    healthy = []
    for item in replies if isinstance(replies, list) else ():
        info = _pairs(item)
        flags = set(info.get(b"flags", b"").split(b","))
        if flags & _BAD_FLAGS or info.get(b"master-link-status") != b"ok":
            continue
        try:
            node = (info[b"ip"].decode("ascii"), int(info[b"port"]))
        except (KeyError, ValueError, UnicodeDecodeError):
            continue
        if node not in avoid:
            healthy.append(node)
    if prefer in healthy:
        return prefer
    return random.choice(healthy) if healthy else None


class SentinelLocator:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        template: resp.Address,
        timeout: float,
        *,
        replicas: bool = False,
    ) -> None:
        self.loop = loop
        self.sentinels = list(sentinels)
        self.service = service.encode()
        self.template = template
        self.timeout = timeout
        self.replicas = replicas
        self.first = 0  # the sentinel asked first: the last one that answered
        self.current: resp.Address | None = None  # the chosen node, None when it must be found
        self.last: resp.Address | None = None  # the node chosen last (kept when `current` is dropped)
        self.links: list[resp.Link] = []
        self.avoid: dict[tuple[str, int], float] = {}  # replica -> loop time until it may be chosen
        self.switches = 0  # +switch-master announcements seen, for tests and logs
        self._lock = asyncio.Lock()
        self._last_ping = 0.0
        self._recheck_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.watch = resp.Link(
            loop, _Ring(self), timeout, name="redis sentinel watch", on_push=self._push, on_up=self._watch_up
        )

    # resp.Locator

    async def locate(self) -> resp.Address:
        async with self._lock:
            if self.current is None:
                self._choose(await self._ask())
            assert self.current is not None
            return self.current

    def lost(self, address: resp.Address) -> None:
        if self.current is address:
            self.current = None
            if address.role == b"slave":
                self.avoid[(address.host, address.port)] = self.loop.time() + AVOID_FOR

    def follow(self, link: resp.Link) -> None:
        self.links.append(link)

    def start(self) -> None:
        self.watch.kick()

    def check(self, now: float) -> None:
        """Periodically: keep the watch subscription alive (PING), or move it to another sentinel;
        a replica reader that fell back to the primary looks for a healthy replica again."""
        current = self.current
        if self.replicas and current is not None and current.role == b"master" and now >= self._recheck_at:
            self._recheck_at = now + REPLICA_RECHECK
            self._refresh()
        conn = self.watch.conn
        if conn is None:
            self.watch.kick()
            return
        if now - conn.last_progress > self.timeout + WATCH_PING_EVERY:
            log.warning("sentinel %s silent; watching another", self.watch.at.where if self.watch.at else "?")
            conn.abort()  # the ring moves to the next sentinel when told the connection was lost
        elif now - self._last_ping >= WATCH_PING_EVERY:
            self._last_ping = now
            conn.send_push(command(b"PING"))

    def close(self) -> None:
        self.watch.close()
        if self._refreshing is not None:
            self._refreshing.cancel()

    # Choosing

    def rotate(self) -> None:
        self.first = (self.first + 1) % len(self.sentinels)

    def _choose(self, address: resp.Address) -> None:
        last = self.last
        if last is not None and address.same_node(last) and address.role == last.role:
            address = last  # the same object: lookup.py compares links' nodes by identity
        self.current = self.last = address
        if last is not None and address is not last:
            # A new node: links elsewhere leave at once, links waiting out a backoff retry now.
            log.warning("redis: now using %s (%s)", address.where, (address.role or b"").decode())
            for link in self.links:
                link.moved(address)

    async def _ask(self) -> resp.Address:
        """Ask the sentinels in turn; the last chosen node when none answers."""
        problems = []
        for _ in range(len(self.sentinels)):
            host, port = self.sentinels[self.first]
            try:
                found = await self._ask_one(host, port)
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: an address that is not one
                problems.append(f"{host}:{port}: {exc or 'timeout'}")
                found = None
            if found is not None:
                return found
            self.rotate()
        if self.last is not None:
            log.warning("no sentinel answered (%s); trying %s again", "; ".join(problems), self.last.where)
            return self.last
        raise OSError(f"no sentinel knows the primary {self.service.decode()!r}: {'; '.join(problems)}")

    async def _ask_one(self, host: str, port: int) -> resp.Address | None:
        cmds = [command(b"SENTINEL", b"get-master-addr-by-name", self.service)]
        if self.replicas:
            cmds.append(command(b"SENTINEL", b"replicas", self.service))
        replies = await query(self.loop, host, port, cmds, self.timeout / 2)
        primary = replies[0]
        if not (isinstance(primary, list) and len(primary) == 2 and all(isinstance(p, bytes) for p in primary)):
            if isinstance(primary, RespError) or primary is None:
                log.warning("sentinel %s:%d does not know %r", host, port, self.service.decode())
            return None
        if self.replicas:
            last = self.last
            now = self.loop.time()
            self.avoid = {node: until for node, until in self.avoid.items() if until > now}
            prefer = (last.host, last.port) if last is not None else None
            replica = pick_replica(replies[1], prefer, self.avoid)
            if replica is not None:
                return self.template.at(replica[0], replica[1], b"slave")
        return self.template.at(primary[0].decode("ascii"), int(primary[1]), b"master")

    # The +switch-master subscription

    def _watch_up(self, conn: resp.Connection) -> None:
        conn.send_push(command(b"SUBSCRIBE", SWITCH))

    def _push(self, value: Reply) -> None:
        if not (isinstance(value, list) and len(value) >= 3):
            return
        if value[0] == b"subscribe":
            self._refresh()  # announcements may have been missed while no sentinel was watched
        elif (
            value[0] == b"message"
            and value[1] == SWITCH
            and isinstance(value[2], bytes)
            # "<name> <old ip> <old port> <new ip> <new port>"
            and value[2].split(b" ", 1)[0] == self.service
        ):
            self.switches += 1
            log.warning("sentinel +switch-master: %s", value[2].decode("ascii", "replace"))
            self._refresh()

    def _refresh(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = self.loop.create_task(self._check_choice())

    async def _check_choice(self) -> None:
        async with self._lock:
            try:
                address = await self._ask()
            except (OSError, TimeoutError):
                return
            self._choose(address)


async def query(
    loop: asyncio.AbstractEventLoop, host: str, port: int, cmds: list[bytes], timeout: float
) -> list[Reply]:
    """Send `cmds` on a fresh connection, return their replies; OSError when it fails."""
    replies: list[Reply] = []
    done = loop.create_future()

    def got(value: Reply) -> None:
        replies.append(value)
        if len(replies) == len(cmds) and not done.done():
            done.set_result(None)

    def lost(conn: resp.Connection) -> None:
        if not done.done():
            done.set_exception(OSError("connection closed"))

    conn = resp.Connection(loop, lost)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)
        for cmd in cmds:
            conn.send(cmd, got)
        await asyncio.wait_for(done, timeout)
    finally:
        if not done.done():
            done.cancel()
        conn.abort()
    if any(r is FAILED for r in replies):
        raise OSError("connection closed")
    return replies
