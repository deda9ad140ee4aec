"""The responder worker's collector schedule (responder/heap.py), run in a fresh interpreter so
that freezing never touches the test process's own objects."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.e2e  # a fresh interpreter

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from shirushi.responder.heap import Heap

    class Node:
        __slots__ = ("other", "__weakref__")

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    full = []
    gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2 and full.append(1))
    heap = Heap(0.0, full_every=100.0)

    # A cycle dropped young is collected by the young collections as usual.
    young = weakref.ref(cycle())
    gc.collect(1)
    assert young() is None

    # A cycle that reached the oldest generation, then was dropped.
    old = cycle()
    old_ref = weakref.ref(old)
    gc.collect(1)
    gc.collect(1)
    del old

    # A cache of long-lived, acyclic, tracked objects growing and churning, as the L1 does:
    # without the schedule, CPython would run full collections over it again and again.
    cache = {}
    for i in range(400_000):
        cache[i % 100_000] = (Node(), i)
    assert not full, len(full)
    assert old_ref() is not None  # waits for the full collection
    heap.tick(50.0)
    assert not full and old_ref() is not None
    heap.tick(100.0)
    assert full == [1] and old_ref() is None
    gone = weakref.ref(cache[7][0])
    del cache[7]
    assert gone() is None  # reference counting frees the cache's objects at once
    print("ok")
    """
)


def test_old_objects_wait_for_the_hourly_collection_and_cycles_are_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
