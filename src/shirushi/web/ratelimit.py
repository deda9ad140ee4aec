"""A per-client-address rate limit for the API's open routes (problem reports, key-compromise
challenges). Pure: time is an argument; state lives in the object (one per route and process).

A sliding pair of one-minute windows: the count of the previous window, weighted by how much of
it still overlaps the last minute, plus the current window's count. Memory is bounded: when
more than `max_clients` addresses are tracked the idle ones are dropped, and if all are active
the table starts afresh (a flood from that many addresses is not something one process limits).
The address is the TCP peer's: a proxy in front must keep addresses apart itself.
"""

from __future__ import annotations

import dataclasses
import math

WINDOW = 60.0


@dataclasses.dataclass
class _Count:
    window: int  # index of the current window (time // WINDOW)
    current: int
    previous: int


class RateLimit:
    def __init__(self, per_minute: int, *, max_clients: int = 10000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._counts: dict[str, _Count] = {}

    def allow(self, client: str, now: float) -> float | None:
        """Count one request from `client` at `now` (seconds); None if allowed, else the
        seconds to wait before the next one would be (for Retry-After)."""
        window = int(now // WINDOW)
        count = self._counts.get(client)
        if count is None:
            if len(self._counts) >= self.max_clients:
                self._prune(window)
            count = self._counts[client] = _Count(window, 0, 0)
        if count.window != window:
            count.previous = count.current if count.window == window - 1 else 0
            count.current = 0
            count.window = window
        overlap = 1.0 - (now - window * WINDOW) / WINDOW
        used = count.previous * overlap + count.current
        if used + 1 > self.per_minute:
            return self._wait(count, now, window)
        count.current += 1
        return None

    def _wait(self, count: _Count, now: float, window: int) -> float:
        # The previous window's weight falls linearly; when it cannot free a slot, the next
        # window does (it starts with this window's count as its previous).
        elapsed = now - window * WINDOW
        if count.previous and count.current + 1 <= self.per_minute:
            needed = (self.per_minute - count.current - 1) / count.previous  # overlap at which one fits
            return max(1.0, math.ceil((1.0 - needed) * WINDOW - elapsed))
        return max(1.0, math.ceil(WINDOW - elapsed))

    def _prune(self, window: int) -> None:
        self._counts = {k: c for k, c in self._counts.items() if c.window >= window - 1}
        if len(self._counts) >= self.max_clients:
            self._counts = {}
