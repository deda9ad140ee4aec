"""A big in-process map kept as many small dicts, so that no one step on it pauses a worker. Pure.

A CPython dict doubles its table as it fills, and the insertion that crosses the threshold
rebuilds all of it: measured here, 35 ms at 700,000 entries and 84 ms at 1.4 million, every
request of the worker waiting meanwhile. Emptying a full memo frees all of its entries at once,
the same kind of pause. With a large `ocsp.cache_mb` the answer cache (lookup.L1) and the decode
memos (routing.py) reach millions of entries; split over `SHARDS` dicts by key hash, each such
step costs a `SHARDS`-th as much and they fall at different moments (bench/RESULTS.md, "A million
certificates"). A lookup costs one `hash()` of a bytes key more (cached in the key after the
first), about 0.1 us.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

SHARDS: Final = 256
_MASK: Final = SHARDS - 1

V = TypeVar("V")


class Shards(Generic[V]):
    """bytes -> V over `SHARDS` dicts; `of(key)` is the dict that holds `key`."""

    __slots__ = ("maps",)

    def __init__(self) -> None:
        self.maps: list[dict[bytes, V]] = [{} for _ in range(SHARDS)]

    def of(self, key: bytes) -> dict[bytes, V]:
        return self.maps[hash(key) & _MASK]

    def __len__(self) -> int:
        return sum(map(len, self.maps))

    def __contains__(self, key: bytes) -> bool:
        return key in self.of(key)

    def items(self) -> Iterator[tuple[bytes, V]]:
        return itertools.chain.from_iterable(m.items() for m in self.maps)

    def clear(self) -> None:
        for m in self.maps:
            m.clear()
