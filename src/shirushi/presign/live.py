"""Signing one response on demand: the budget, the asked-for list, and the signing itself.

`TokenBucket` and `Asked` are pure (time is an argument) and thread-safe. `LiveSigner.answer`
does I/O: one store read, and for a known unexpired serial within the budget one signature and
one Redis write through the presigner's CacheWriter (same compare-and-set on the status version
as every other write, so a live answer never replaces a newer revoked one). The reply is read
back from Redis after the write, so the caller always gets what Redis now holds: the newer
record when a revocation won the race.

Order of the checks (issue "never dark", and the Must hold list): the serial is looked up before
the budget is touched, so a flood of unknown serials costs store reads and no signatures; a
known serial over the budget is remembered in `Asked`, which the background refill drains first.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

import redis

from shirushi.cache import livewire, records
from shirushi.errors import ShirushiError
from shirushi.presign.presigner import Presigner, sign_rows

log = logging.getLogger("shirushi.presign")


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take(now)` spends one if it can."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.at = now
        self._lock = threading.Lock()

    def take(self, now: float) -> bool:
        with self._lock:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Asked:
    """Serials relying parties asked for and did not get at once, oldest first, deduplicated.

    Bounded: past `limit` the newest are dropped (the full refill reaches them anyway).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._serials: dict[int, None] = {}
        self._lock = threading.Lock()

    def add(self, serial: int) -> None:
        with self._lock:
            if len(self._serials) < self.limit:
                self._serials[serial] = None

    def take(self, n: int) -> list[int]:
        with self._lock:
            out: list[int] = []
            while self._serials and len(out) < n:
                serial = next(iter(self._serials))
                del self._serials[serial]
                out.append(serial)
            return out

    def __len__(self) -> int:
        return len(self._serials)


@dataclasses.dataclass
class Counts:
    """What the live path did since start (logged by the service)."""

    signed: int = 0
    unknown: int = 0
    over_budget: int = 0
    failed: int = 0
    not_mine: int = 0


class LiveSigner:
    """Redis key -> (livewire status, packed record); called from worker threads."""

    def __init__(self, presigner: Presigner, bucket: TokenBucket, asked: Asked, monotonic: Callable[[], float]) -> None:
        self.presigner = presigner
        self.bucket = bucket
        self.asked = asked
        self.monotonic = monotonic
        self.counts = Counts()
        self._lock = threading.Lock()

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.counts, field, getattr(self.counts, field) + 1)

    def answer(self, key: bytes) -> tuple[int, bytes]:
        try:
            return self._answer(key)
        except (ShirushiError, redis.RedisError) as exc:
            self._count("failed")
            log.warning("live signing failed", extra={"error": str(exc)})
            return livewire.TRY_LATER, b""

    def _answer(self, key: bytes) -> tuple[int, bytes]:
        parsed = livewire.parse_key(key)
        ctx = self.presigner.context()
        if parsed is None or parsed[0] != ctx.issuer_id:
            self._count("not_mine")
            return livewire.NOT_MINE, b""
        issuer, alg, serial = parsed
        stored = self._stored(key)
        if stored is not None:
            # Written meanwhile (the refill, or a miss answered just before): no signature.
            return livewire.OK, stored
        now = self.presigner.clock.now()
        rows = [r for r in self.presigner.store.statuses_of(issuer, [serial]) if r.not_after > now]
        if not rows:
            # Never issued, expired or purged: RFC 9919 3.2.3, the responder answers unauthorized.
            self._count("unknown")
            return livewire.UNKNOWN, b""
        if not self.bucket.take(self.monotonic()):
            self.asked.add(serial)
            self._count("over_budget")
            return livewire.TRY_LATER, b""
        # Only the CertID hash algorithm asked for: the other one costs a signature nobody wants
        # yet; the refill and the refresh sign both as usual.
        one = dataclasses.replace(ctx, hashes=tuple(h for h in ctx.hashes if h.alg == alg))
        entries, due = sign_rows(rows, one, self.presigner.signer, now)
        self.presigner.writer.put(issuer, entries, due)
        self._count("signed")
        stored = self._stored(key)
        if stored is None:
            # Written and gone at once (a FLUSHALL in between): ask again later.
            return livewire.TRY_LATER, b""
        return livewire.OK, stored

    def _stored(self, key: bytes) -> bytes | None:
        value = self.presigner.writer.client.get(key)
        if isinstance(value, bytes) and records.unpack(value) is not None:
            return value
        return None
