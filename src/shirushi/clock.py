"""The clock seam: everything that needs "now" takes a Clock, so tests can freeze time.

All times are timezone-aware UTC with whole seconds (RFC 5280 4.1.2.5, RFC 6960 4.2.2.1 forbid
fractional seconds in the encodings we produce).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.UTC


def years_before(now: dt.datetime, years: int) -> dt.datetime:
    """`now` less `years` calendar years (29 February falls back to the 28th): retention cut-offs."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def whole_seconds(t: dt.datetime) -> dt.datetime:
    """Return `t` in UTC without its fractional seconds."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: Shirushi only handles timezone-aware UTC times")
    return t.astimezone(UTC).replace(microsecond=0)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, UTC, whole seconds."""
        ...


class SystemClock:
    """The machine clock (expected to be NTP-synchronised, policy 5.5.5)."""

    def now(self) -> dt.datetime:
        return whole_seconds(dt.datetime.now(UTC))


class FrozenClock:
    """A clock that only moves when told to: for tests and simulations."""

    def __init__(self, at: dt.datetime) -> None:
        self._at = whole_seconds(at)

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        self._at = whole_seconds(at)

    def advance(self, delta: dt.timedelta) -> None:
        self._at = whole_seconds(self._at + delta)
