"""Per-worker request counts, kept as plain integers and flushed into Prometheus every tick.

A request costs about a microsecond and a half of Python; a Prometheus counter in multiprocess
mode takes a lock and writes a memory-mapped file per increment, which would cost as much again.
So the hot path only bumps a dict entry, and the worker's ticker (`flush`, four times a second)
adds the differences to the shared values.

Latency: answers written in the same callback that parsed the request (the in-process cache,
errors) are counted in the lowest bucket without reading a clock; only requests that waited for
Redis are timed.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any, Final

from shirushi.metrics.registry import LATENCY_BUCKETS, enabled, metrics

if TYPE_CHECKING:
    from shirushi.responder.lookup import Lookup

GOOD: Final = 0
REVOKED: Final = 1
NO_STATUS: Final = 2  # an OCSP error or HTTP refusal: no certificate status
_STATUS_NAMES: Final = ("good", "revoked", "none")
_METHOD_NAMES: Final = {-1: "other", 0: "GET", 1: "HEAD", 2: "POST"}


def _ignore(*_: object) -> None:
    return None


class Tally:
    def __init__(self) -> None:
        # (method kind, access-log outcome b"outcome\tcode", status) -> requests since the flush
        self.counts: dict[tuple[int, bytes, int], int] = {}
        self.waited = [0] * (len(LATENCY_BUCKETS) + 1)
        self.waited_sum = 0.0
        self.enabled = enabled()
        self._children: dict[tuple[int, bytes, int], Any] = {}
        self._seen = (0, 0, 0, 0)  # lookup.hits, misses, failures, reconnects at the last flush
        if not self.enabled:
            # Metrics off: the hot path pays one call to a function that does nothing, which is
            # the baseline bench/responder measures the counting against.
            self.count = self.waited_for = _ignore  # type: ignore[method-assign,assignment]

    def count(self, kind: int, outcome: bytes, status: int) -> None:
        key = (kind, outcome, status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1

    def waited_for(self, seconds: float) -> None:
        self.waited[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.waited_sum += seconds

    def flush(self, lookup: Lookup) -> None:
        if not self.enabled:
            self.counts.clear()
            return
        m = metrics()
        total = 0
        counts, self.counts = self.counts, {}
        for key, n in counts.items():
            total += n
            child = self._children.get(key)
            if child is None:
                kind, outcome, status = key
                name, _, code = outcome.decode("ascii").partition("\t")
                child = self._children[key] = m.ocsp_requests.labels(
                    _METHOD_NAMES.get(kind, "other"), name if name != "-" else "http_error", code, _STATUS_NAMES[status]
                )
            child.inc(n)
        waited = self.waited
        immediate = total - sum(waited)
        if total:
            # prometheus_client has no bulk observe; its histogram keeps one value per bucket
            # (not cumulative) and their sum, which is what a bulk add needs.
            buckets = m.ocsp_latency._buckets
            buckets[0].inc(max(0, immediate) + waited[0])
            for i in range(1, len(waited)):
                if waited[i]:
                    buckets[i].inc(waited[i])
            if self.waited_sum:
                m.ocsp_latency._sum.inc(self.waited_sum)
            self.waited = [0] * len(waited)
            self.waited_sum = 0.0
        seen = (lookup.l1_hits, lookup.l1_misses, lookup.failures, lookup.connects)
        hits, misses, failures, connects = (now - before for now, before in zip(seen, self._seen, strict=True))
        self._seen = seen
        if hits:
            m.l1_lookups.labels("hit").inc(hits)
        if misses:
            m.l1_lookups.labels("miss").inc(misses)
        if failures:
            m.redis_errors.inc(failures)
        if connects:
            m.redis_reconnects.inc(connects)
