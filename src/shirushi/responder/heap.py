"""When the cyclic garbage collector of a responder worker may traverse its old objects. Acts on `gc`.

A worker keeps hundreds of thousands of long-lived objects: the answers in the L1 cache and the
decode memos, a few per distinct request. CPython collects its oldest generation each time a
quarter more objects have survived into it, and such a collection traverses every one of them:
with 100,000 cached answers, pauses of 20 to 300 ms every few seconds, which cut the random-mix
throughput by about a third and set its p99 latency (bench/RESULTS.md, "Random mix").

None of that needs the collector: everything the caches hold is acyclic and is freed by
reference counting the moment it is dropped. So the young generations are collected as usual
(cheap: only what was allocated since), and the oldest only every `full_every` seconds, by
`tick`: one pause an hour instead of one every few seconds. A reference cycle that lived long
enough to reach the oldest generation waits for that collection, so nothing leaks.
"""

from __future__ import annotations

import gc
from typing import Final

FULL_EVERY: Final = 3600.0  # seconds
# gc's third threshold counts young collections between two automatic full ones; this many is
# never reached between two ticks.
_NEVER: Final = 2**31 - 1


class Heap:
    """The worker's collector schedule; `tick(now)` from the worker's ticker (monotonic seconds)."""

    def __init__(self, now: float, full_every: float = FULL_EVERY) -> None:
        self.full_every = full_every
        self.next_full = now + full_every
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)

    def tick(self, now: float) -> None:
        if now >= self.next_full:
            self.next_full = now + self.full_every
            gc.collect()
