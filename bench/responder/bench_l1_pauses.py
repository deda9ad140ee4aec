"""How long one insertion into the responder's in-process maps can stall a worker.

Fills an answer cache (lookup.L1) with `--count` distinct answers (a budget that holds them all,
as with a large `ocsp.cache_mb`), then a decode memo (routing.remember) sized as a worker sizes it
for `--cache-mb` with twice as many requests (so it fills and is emptied), under the worker's
collector schedule (heap.py); times every step and reports the slowest, how many took over 1 ms
and over 10 ms, and their sum. In process, no I/O. Against another checkout:
`PYTHONPATH=OTHER/src`.

    .venv/bin/python bench/responder/bench_l1_pauses.py [--count 1400000] [--cache-mb 3000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from shirushi.cache import records
from shirushi.responder.heap import Heap
from shirushi.responder.lookup import L1
from shirushi.responder.responses import Answer
from shirushi.responder.routing import memo_entries, remember

NOW = int(time.time())


def timed(what: str, count: int, step: Callable[[bytes], None]) -> None:
    """Run `step` on `count` distinct keys, timing each; print the pauses."""
    slow: list[float] = []
    clock = time.perf_counter
    started = clock()
    # Keys made one by one: a list of them all would be one young container of a million items,
    # traversed by the next young collections (tens of ms each), which a worker never holds.
    for i in range(count):
        key = b"shirushi:ocsp:{0123456789abcdef}:%040x:sha1" % i
        before = clock()
        step(key)
        spent = clock() - before
        if spent > 0.001:
            slow.append(spent)
    total = clock() - started
    over_10 = [s for s in slow if s > 0.01]
    each = total / count * 1e6
    slowest = max(slow, default=0) * 1e3
    print(f"{what}: {count} in {total:.2f} s ({each:.2f} us each); slowest {slowest:.1f} ms;", end=" ")
    print(f"{len(slow)} over 1 ms ({sum(slow) * 1e3:.0f} ms in all),", end=" ")
    print(f"{len(over_10)} over 10 ms ({sum(over_10) * 1e3:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_400_000)
    parser.add_argument("--cache-mb", type=int, default=3000, help="sizes the decode memo as the worker does")
    args = parser.parse_args()
    Heap(time.monotonic())  # the worker's collector schedule: no automatic full collection
    der = b"\x30\x82\x05\x81" + os.urandom(1409)  # the size of an RSA-2048 response
    answer = Answer.of(records.make_record(der, NOW - 60, NOW + 86400, NOW + 43200))
    l1 = L1(args.count * (answer.size + 64) * 2, 3600)
    l1.set_alive(True)
    timed("L1.put", args.count, lambda key: l1.put(key, answer, NOW, l1.generation))

    size = memo_entries(args.cache_mb << 20)
    try:  # sharded memos (responder/shards.py), or one dict in a checkout before them
        from shirushi.responder.shards import SHARDS, Shards

        memo: object = Shards()
        size //= SHARDS
    except ImportError:
        memo = {}
    value = (0, b"plan", b"tag")
    timed(
        f"memo of {memo_entries(args.cache_mb << 20)}",
        2 * memo_entries(args.cache_mb << 20),
        lambda key: remember(memo, key, value, size),
    )  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
