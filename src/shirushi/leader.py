"""Which `serve` runs the schedules: the leader election of several backends on one database.

Issuance, revocation and the responders run on every backend; the schedules (outbox catch-up,
presign refill and refresh, scheduled CRLs, signer renewal, following outside CAs) run on one.

- PostgreSQL: the leader is the backend holding a session advisory lock (`store/locks.py`) on a
  connection of its own. Chosen over a lease row with an expiry: the server drops the lock the
  moment the holder's connection ends (SIGKILL, crash: the kernel closes the socket), so takeover
  needs no expiry to run out and no clocks to agree; a vanished machine is caught by TCP
  keepalives set on both ends (within 25 s). The others try again every `CAMPAIGN_EVERY`
  seconds, so takeover is within 30 s. Session locks need a session: point `database.url` at
  PostgreSQL itself or a session-pooling proxy, not a transaction-pooling one.
- SQLite: one machine; `serve`'s lock on the data directory already makes this process the only
  one, so it always leads.

The leader checks its lock every `CAMPAIGN_EVERY` seconds; when the check fails it stops its
schedules (a job in progress stops at its next batch) and campaigns again. Does database I/O
through the lock; the loop runs in `serve`'s event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from shirushi.store.locks import LeaderLock, is_postgresql

log = logging.getLogger("shirushi.leader")

CAMPAIGN_EVERY = 5.0  # seconds


class Leadership(Protocol):
    @property
    def description(self) -> str: ...

    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def close(self) -> None: ...


class OneMachine:
    """SQLite: the single `serve` of the data directory always leads."""

    description = "sqlite: one machine"

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def close(self) -> None:
        pass


def leadership_for(engine: Engine) -> Leadership:
    return LeaderLock(engine) if is_postgresql(engine) else OneMachine()


class Election:
    """Campaign, lead, step down: calls `on_gain` when this process becomes the leader and
    `on_loss` when it stops being it. Both run in the event loop and must not block."""

    def __init__(
        self,
        leadership: Leadership,
        on_gain: Callable[[], None],
        on_loss: Callable[[], None],
        every: float = CAMPAIGN_EVERY,
    ) -> None:
        self.leadership = leadership
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.every = every
        self.leading = False

    def elected(self) -> None:
        """The lock is ours (from `step`, or taken by `serve` before its start-up steps)."""
        self.leading = True
        log.info("leader elected", extra={"how": self.leadership.description})
        self.on_gain()

    async def step(self) -> bool:
        """One campaign or check; True while leading."""
        if not self.leading:
            if await asyncio.to_thread(self.leadership.try_acquire):
                self.elected()
        elif not await asyncio.to_thread(self.leadership.still_held):
            self.leading = False
            log.warning("leadership lost: schedules stopped", extra={"how": self.leadership.description})
            self.on_loss()
        return self.leading

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.every)


class LeaderCollector:
    """The `shirushi_leader` gauge (1: this `serve` runs the schedules), read at scrape time."""

    def __init__(self, leading: Callable[[], bool]) -> None:
        self.leading = leading

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("shirushi_leader", "1 when this backend runs the schedules (the leader), else 0")
        gauge.add_metric([], 1.0 if self.leading() else 0.0)
        yield gauge
