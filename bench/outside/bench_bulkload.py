"""The store's side of a first import: `store.outside.apply` of N new certificates (every tenth
revoked, with its outbox and audit rows) into a fresh SQLite store, two ways in the same run,
interleaved, best of `--rounds`:
- indexes maintained row by row (the rebuild threshold set out of reach);
- secondary indexes dropped and rebuilt inside the transaction (`store.bulkload`, the default).
Reference in the same run: sqlite3's executemany of the same rows into a table with no index at
all (the floor of any insert here), and the sort of the rows alone.

    .venv/bin/python bench/outside/bench_bulkload.py            # --rows N (default 1,000,000)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import tempfile
import time
from pathlib import Path

from shirushi.store import Store, bulkload
from shirushi.store import outside as o

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
ISSUER = "0a1b2c3d4e5f6071"


def seen(rows: int) -> list[o.Seen]:
    out = []
    for i in range(1, rows + 1):
        after = T0 + dt.timedelta(days=365, seconds=i)
        if i % 10 == 0:
            out.append(o.Seen(0x1000 + i, after, f"/CN=host{i}.example", T0, "superseded"))
        else:
            out.append(o.Seen(0x1000 + i, after, f"/CN=host{i}.example"))
    return out


def apply_once(root: Path, items: list[o.Seen], rebuild_rows: int) -> float:
    store = Store.open(f"sqlite:///{root / 'shirushi.db'}")
    o.add_issuer(store, ISSUER, "bench", "CN=Bench", b"der", T0)
    bulkload.REBUILD_ROWS = rebuild_rows
    started = time.perf_counter()
    o.apply(store, ISSUER, o.Changes(new=items), T0, {"source": "bench"})
    seconds = time.perf_counter() - started
    store.close()
    return seconds


def floor_once(root: Path, items: list[o.Seen]) -> tuple[float, float]:
    rows = [(ISSUER, format(s.serial, "x"), b"", s.subject, "", "1970-01-01 00:00:00.000000",
             bulkload.sqlite_time(s.not_after), "", "outside", "2026-12-01 00:00:00.000000",
             bulkload.sqlite_time(s.revoked_at), s.reason, 0, False) for s in items]  # fmt: skip
    started = time.perf_counter()
    rows.sort(key=lambda r: r[1])
    sort = time.perf_counter() - started
    db = sqlite3.connect(root / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA cache_size=-{bulkload.CACHE_KIB}")
    db.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(o.COLUMNS)})")
    started = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO t ({', '.join(o.COLUMNS)}) VALUES ({', '.join('?' * len(o.COLUMNS))})", rows)
    db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return seconds, sort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    items = seen(args.rows)
    default = bulkload.REBUILD_ROWS
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bulkload-") as tmp:
        for r in range(args.rounds):
            for name, limit in (("indexes maintained row by row", 10**12), ("indexes rebuilt (default)", default)):
                root = Path(tmp) / f"{r}-{limit}"
                root.mkdir()
                best[name] = min(best.get(name, float("inf")), apply_once(root, items, limit))
            root = Path(tmp) / f"{r}-floor"
            root.mkdir()
            floor, sort = floor_once(root, items)
            best["reference: executemany into a table without indexes"] = min(
                best.get("reference: executemany into a table without indexes", float("inf")), floor
            )
            best["reference: sorting the rows"] = min(best.get("reference: sorting the rows", float("inf")), sort)
    reference = best["reference: executemany into a table without indexes"]
    print(f"{args.rows:,} new certificates ({args.rows // 10:,} revoked), best of {args.rounds}")
    print("| case | seconds | / reference |\n| --- | ---: | ---: |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.1f} | {seconds / reference:.2f} |")


if __name__ == "__main__":
    main()
