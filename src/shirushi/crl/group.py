"""Group commit for revocation-driven CRLs: one CRL for every revocation waiting on it. No I/O.

A revocation returns only once a published CRL lists it. A CRL made for one revocation lists
every revocation committed before its entries were read, so callers that arrive while a CRL is
being made need not each make their own: they wait for the next one, which starts as soon as the
current one ends, and that one covers them all. N concurrent revocations then cost at most two
CRLs instead of N, whatever N.

Correctness rests on one rule: a caller is served only by a generation that *started* after the
caller arrived (its revocation was committed before it called, so that generation reads it).
Across processes and backends the CRL service's per-scope lock (PostgreSQL's advisory lock, or
a file lock on SQLite) still orders generations; this class only removes the redundant ones
inside one process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Run `make` for callers of `request`, sharing one run among those that arrive together."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._changed = threading.Condition()
        self._started = 0  # generations begun
        self._finished = 0  # generations ended (their outcome is in _outcome)
        self._running = False
        self._outcome: T | BaseException | None = None
        self.runs = 0  # how many times `make` ran (for tests and benchmarks)

    def request(self) -> T:
        """Return the outcome of a generation that began after this call; raise its error."""
        with self._changed:
            target = self._started + 1
            while self._finished < target:
                if not self._running:
                    # The next generation is ours to run (for everybody waiting on it).
                    self._running = True
                    self._started += 1
                    number = self._started
                    self._changed.release()
                    try:
                        outcome: T | BaseException = self._make()
                    except BaseException as exc:
                        outcome = exc
                    finally:
                        self._changed.acquire()
                    self.runs += 1
                    self._running = False
                    self._finished = number
                    self._outcome = outcome
                    self._changed.notify_all()
                else:
                    self._changed.wait()
            # Any generation at or after `target` covers this caller; the latest is what we have.
            latest = self._outcome
        if isinstance(latest, BaseException):
            raise latest
        return latest  # type: ignore[return-value]
