"""Signing one response on demand: the budget, the asked-for list, and the signing itself.

`TokenBucket` and `Asked` are pure (time is an argument) and thread-safe.
`LiveSigner.answer_many` does I/O for a batch of keys: one Redis read, one store read, for each
known unexpired serial within the budget one signature, then one Redis write through the
presigner's CacheWriter (same compare-and-set on the status version as every other write, so a
live answer never replaces a newer revoked one). The reply is read back from Redis after the
write, so the caller always gets what Redis now holds: the newer record when a revocation won
the race.

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
from shirushi.cache.writer import Entry
from shirushi.errors import ShirushiError
from shirushi.metrics.registry import metrics
from shirushi.presign.presigner import Presigner, sign_rows
from shirushi.store.records import StatusRow

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
    found: int = 0  # in Redis by the time it was asked for (the refill, or an earlier miss)


class LiveSigner:
    """Redis key -> (livewire status, packed record); called from worker threads."""

    def __init__(self, presigner: Presigner, bucket: TokenBucket, asked: Asked, monotonic: Callable[[], float]) -> None:
        self.presigner = presigner
        self.bucket = bucket
        self.asked = asked
        self.monotonic = monotonic
        self.counts = Counts()
        self._lock = threading.Lock()

    def _count(self, field: str, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            setattr(self.counts, field, getattr(self.counts, field) + n)
        metrics().live_signing.labels(field).inc(n)

    def answer(self, key: bytes) -> tuple[int, bytes]:
        return self.answer_many([key])[key]

    def answer_many(self, keys: list[bytes]) -> dict[bytes, tuple[int, bytes]]:
        """Distinct keys -> their answers, with one store query and two Redis round trips for
        the lot (the service hands over what queued while the previous batch was signed)."""
        try:
            return self._answer_many(keys)
        except (ShirushiError, redis.RedisError) as exc:
            self._count("failed", len(keys))
            log.warning("live signing failed", extra={"error": str(exc)})
            return dict.fromkeys(keys, (livewire.TRY_LATER, b""))

    def _answer_many(self, keys: list[bytes]) -> dict[bytes, tuple[int, bytes]]:
        out: dict[bytes, tuple[int, bytes]] = {}
        ctx = self.presigner.context()
        wanted: dict[bytes, tuple[str, int]] = {}
        for key in keys:
            parsed = livewire.parse_key(key)
            if parsed is None or parsed[0] != ctx.issuer_id:
                out[key] = (livewire.NOT_MINE, b"")
            else:
                wanted[key] = (parsed[1], parsed[2])
        self._count("not_mine", len(out))
        # Written meanwhile (the refill, or a miss answered just before): no signature.
        for key, stored in zip(wanted, self._stored(list(wanted)), strict=True):
            if stored is not None:
                out[key] = (livewire.OK, stored)
                self._count("found")
        wanted = {k: v for k, v in wanted.items() if k not in out}
        if not wanted:
            return out
        now = self.presigner.clock.now()
        serials = sorted({serial for _, serial in wanted.values()})
        rows = {r.serial: r for r in self.presigner.store.statuses_of(ctx.issuer_id, serials) if r.not_after > now}
        by_alg: dict[str, list[StatusRow]] = {}
        signed: list[bytes] = []
        for key, (alg, serial) in wanted.items():
            row = rows.get(serial)
            if row is None:
                # Never issued, expired or purged: RFC 9919 3.2.3, the responder answers unauthorized.
                out[key] = (livewire.UNKNOWN, b"")
                self._count("unknown")
            elif not self.bucket.take(self.monotonic()):
                self.asked.add(serial)
                out[key] = (livewire.TRY_LATER, b"")
                self._count("over_budget")
            else:
                by_alg.setdefault(alg, []).append(row)
                signed.append(key)
        if not signed:
            return out
        entries: list[Entry] = []
        due: dict[int, int] = {}
        for alg, alg_rows in by_alg.items():
            # Only the CertID hash algorithm asked for: the other one costs a signature nobody
            # wants yet; the refill and the refresh sign both as usual.
            one = dataclasses.replace(ctx, hashes=tuple(h for h in ctx.hashes if h.alg == alg))
            more, more_due = sign_rows(alg_rows, one, self.presigner.signer, now)
            entries += more
            due.update(more_due)
        self.presigner.writer.put(ctx.issuer_id, entries, due)
        self._count("signed", len(signed))
        for key, stored in zip(signed, self._stored(signed), strict=True):
            # None: written and gone at once (a FLUSHALL in between): ask again later. Otherwise
            # what Redis holds, which is the newer record if a revocation won the race.
            out[key] = (livewire.OK, stored) if stored is not None else (livewire.TRY_LATER, b"")
        return out

    def _stored(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values = self.presigner.writer.client.mget(keys)
        return [v if isinstance(v, bytes) and records.unpack(v) is not None else None for v in values]
