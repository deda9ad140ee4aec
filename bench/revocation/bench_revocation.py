"""Revocation through the API as the CRL grows: latency at 0 and N revoked entries, and throughput.

For each size (0 and --entries, default 100,000) in one run: a fresh CA (`Backend.init`, software
keys, SQLite, a private redis-server), N revoked certificates seeded straight into the
`certificates` table (as outside benchmark instruments may), the start-up CRL that `serve`
publishes (timed: the cold full read), then the real API app (`shirushi.web.api`) under uvicorn
on 127.0.0.1:
- sequential: --sequential revocations one after another (`POST .../revoke`), p50 and p90;
- concurrent: --concurrent revocations from --clients client threads, wall time, and how many CRLs
  they cost (group commit).
Every revocation must answer 200 with nothing pending; at the end the published CRL must list
exactly N + all revoked here, and Redis must hold a revoked response for a sample of them.

    .venv/bin/python bench/revocation/bench_revocation.py [--entries 100000] [--clients 50]
        [--sequential 50] [--concurrent 1000] [--shards N] [--json]

With --shards N (`crl.shards`): the seeded certificates name their shard as issuance would
(`crl/shards.shard_of`), each revocation regenerates its shard's CRL, and the check at the end is
that the shard CRLs together list exactly what was revoked; the CRL size shown is the largest
shard's.

With --bulk STORE:REVOKE instead: a store of STORE unrevoked certificates, REVOKE of them revoked
through `POST /api/v1/revocations` in calls of 10,000 (presign workers: --workers), timed to the
last answer (all in Redis and on the CRL); next to it, as the reference, the presigner signing
the same number of responses over the same workers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from shirushi import config
from shirushi.backend import Backend
from shirushi.cache import records
from shirushi.crl.service import crl_path
from shirushi.crl.shards import shard_of
from shirushi.web.api import create_app
from support.ocsp_pki import RedisProcess

TOKEN = "bench-token"
REASONS = ["unspecified", "keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation"]


def sqlite_time(t: dt.datetime) -> str:
    # The text form SQLAlchemy stores in SQLite (UTC wall time).
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed(db: Path, issuer_id: str, revoked: int, good: int, rng: random.Random, shards: int = 1) -> list[int]:
    """Insert `revoked` revoked and `good` unrevoked subscriber certificates; return the good serials."""
    now = dt.datetime.now(dt.UTC)
    chosen: set[int] = set()
    while len(chosen) < revoked + good:
        chosen.add(rng.getrandbits(127) | 1 << 126)  # 16 octets, like issued serials
    serials = sorted(chosen, key=lambda _: rng.random())
    rows = []
    for i, serial in enumerate(serials):
        is_revoked = i < revoked
        rows.append(
            (
                issuer_id,
                format(serial, "x"),
                b"\x30\x00",
                "CN=bench",
                "bench.example",
                sqlite_time(now - dt.timedelta(days=10)),
                sqlite_time(now + dt.timedelta(days=80)),
                format(serial, "064x")[-64:],
                "server",
                sqlite_time(now - dt.timedelta(days=10)),
                sqlite_time(now - dt.timedelta(seconds=rng.randrange(1, 9 * 86400))) if is_revoked else None,
                rng.choice(REASONS) if is_revoked else None,
                1 if is_revoked else 0,
                0,
                shard_of(serial, shards),
            )
        )
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO certificates (issuer_id, serial, der, subject, dns_names, not_before, not_after,"
            " spki_sha256, kind, created_at, revoked_at, revocation_reason, status_version,"
            " crl_shown_after_expiry, crl_shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return serials[revoked:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def revoke(self, serial: int) -> float:
        body = json.dumps({"reason": "superseded"})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        start = time.perf_counter()
        self.conn.request("POST", f"/api/v1/certificates/{serial:X}/revoke", body, headers)
        response = self.conn.getresponse()
        data = json.loads(response.read())
        elapsed = time.perf_counter() - start
        if response.status != 200 or data.get("status") != "revoked" or "pending" in data:
            raise RuntimeError(f"revocation of {serial:x} answered {response.status}: {data}")
        return elapsed


def run_size(entries: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = random.Random(entries)
    data = root / f"ca-{entries}"
    with RedisProcess(root / f"redis-{entries}") as redis_server:
        settings = config.load(
            None,
            environ={
                "SHIRUSHI_DATA_DIR": str(data),
                "SHIRUSHI_REDIS__URL": redis_server.url,
                "SHIRUSHI_API__TOKEN": TOKEN,
                "SHIRUSHI_PRESIGN__WORKERS": "1",
                "SHIRUSHI_CRL__SHARDS": str(args.shards),
            },
        )
        backend = Backend(settings)
        backend.init()
        issuer = backend.store.issuer("issuing-ca")
        assert issuer is not None
        good = seed(data / "shirushi.db", issuer.id, entries, args.sequential + args.concurrent, rng, args.shards)
        start = time.perf_counter()
        cold = backend.crls.generate_all("issuing-ca", scheduled=True)  # every shard, as `serve` starts
        cold_s = time.perf_counter() - start
        listed_cold = sum(c.entries for c in cold if c.shard in shards_revoked_into(args.shards))
        assert listed_cold == entries, (listed_cold, entries)

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(backend), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            client = Client(port)
            sequential = [client.revoke(serial) for serial in good[: args.sequential]]
            targets = good[args.sequential :]
            runs_before = crl_runs(backend)
            local = threading.local()

            def one(serial: int) -> float:
                if not hasattr(local, "client"):
                    local.client = Client(port)
                return local.client.revoke(serial)

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                concurrent_latencies = list(pool.map(one, targets))
            wall = time.perf_counter() - start
            crls_made = crl_runs(backend) - runs_before
        finally:
            server.should_exit = True
            thread.join(30)
        files = [crl_path(settings, "issuing-ca", shard) for shard in shards_revoked_into(args.shards)]
        listed = {entry.serial_number for f in files for entry in x509.load_der_x509_crl(f.read_bytes())}
        expected = entries + len(good)
        assert len(listed) == expected and set(good) <= listed, (len(listed), expected)
        issuer_key = backend.presigner.context().issuer_id
        for serial in rng.sample(good, 20):
            raw = backend.redis.get(records.response_key(issuer_key, "sha1", serial))
            assert raw is not None, f"no OCSP response for {serial:x}"
        backend.close()
    return {
        "entries": entries,
        "cold_crl_s": round(cold_s, 3),
        "sequential_p50_ms": round(statistics.median(sequential) * 1000, 1),
        "sequential_p90_ms": round(statistics.quantiles(sequential, n=10)[-1] * 1000, 1),
        "concurrent": len(targets),
        "clients": args.clients,
        "concurrent_wall_s": round(wall, 2),
        "concurrent_per_s": round(len(targets) / wall, 1),
        "concurrent_p50_ms": round(statistics.median(concurrent_latencies) * 1000, 1),
        "crls_for_concurrent": crls_made,
        "shards": args.shards,
        "crl_mib": round(max(f.stat().st_size for f in files) / 2**20, 2),
    }


def crl_runs(backend: Backend) -> int:
    """CRLs made so far by the issuing CA's group commits, every shard together."""
    return sum(group.runs for (name, _), group in backend.crls._groups.items() if name == "issuing-ca")


def shards_revoked_into(shards: int) -> list[int]:
    """The CRLs a revocation regenerates: the full CRL with one shard, else shards 1..N."""
    return [0] if shards <= 1 else list(range(1, shards + 1))


def run_bulk(store_size: int, revoke: int, workers: int, root: Path) -> dict[str, Any]:
    rng = random.Random(store_size)
    data = root / "ca-bulk"
    with RedisProcess(root / "redis-bulk") as redis_server:
        settings = config.load(
            None,
            environ={
                "SHIRUSHI_DATA_DIR": str(data),
                "SHIRUSHI_REDIS__URL": redis_server.url,
                "SHIRUSHI_API__TOKEN": TOKEN,
                "SHIRUSHI_PRESIGN__WORKERS": str(workers),
            },
        )
        backend = Backend(settings)
        backend.init()
        issuer = backend.store.issuer("issuing-ca")
        assert issuer is not None
        good = seed(data / "shirushi.db", issuer.id, 0, store_size, rng)
        backend.crls.generate("issuing-ca", scheduled=True)
        targets = good[:revoke]
        # Reference: the presigner alone signing as many responses over the same workers.
        rows = backend.store.statuses_of(issuer.id, good[revoke : revoke * 2] or good[:revoke])
        start = time.perf_counter()
        backend.presigner.presign(rows)
        sign_s = time.perf_counter() - start
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(backend), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        calls = []
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            start = time.perf_counter()
            for i in range(0, len(targets), 10_000):
                chunk = [format(s, "X") for s in targets[i : i + 10_000]]
                t = time.perf_counter()
                conn.request(
                    "POST", "/api/v1/revocations", json.dumps({"serials": chunk, "reason": "superseded"}), headers
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                calls.append(time.perf_counter() - t)
                if response.status != 200 or len(body["revoked"]) != len(chunk) or "pending" in body:
                    raise RuntimeError(f"bulk call answered {response.status}: {str(body)[:300]}")
            wall = time.perf_counter() - start
        finally:
            server.should_exit = True
            thread.join(30)
        crl = x509.load_der_x509_crl((data / "repository" / "issuing-ca.crl").read_bytes())
        assert len(crl) == len(targets), (len(crl), len(targets))
        backend.close()
    return {
        "store": store_size,
        "revoked": len(targets),
        "workers": workers,
        "bulk_wall_s": round(wall, 1),
        "bulk_per_s": round(len(targets) / wall),
        "call_s_median": round(statistics.median(calls), 1),
        "presign_alone_per_s": round(len(rows) / sign_s),
        "bulk_vs_presign": round((len(targets) / wall) / (len(rows) / sign_s), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=1, help="crl.shards (default 1: one CRL)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bulk", metavar="STORE:REVOKE", help="the bulk revocation benchmark instead")
    parser.add_argument("--workers", type=int, default=2, help="presign workers for --bulk")
    args = parser.parse_args()
    if args.bulk:
        store_size, revoke = (int(x) for x in args.bulk.split(":"))
        with tempfile.TemporaryDirectory(prefix="shirushi-bench-bulk-") as tmp:
            result = run_bulk(store_size, revoke, args.workers, Path(tmp))
        print(json.dumps({**result, "load": os.getloadavg()[0]}))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="shirushi-bench-revocation-") as tmp:
        for entries in (0, args.entries):
            results.append(run_size(entries, args, Path(tmp)))
    ratio = results[1]["sequential_p50_ms"] / results[0]["sequential_p50_ms"]
    if args.json:
        print(json.dumps({"results": results, "p50_ratio": round(ratio, 2), "load": os.getloadavg()}))
        return
    header = list(results[0])
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---:" for _ in header) + " |")
    for r in results:
        print("| " + " | ".join(f"{r[h]:,}" if isinstance(r[h], int) else str(r[h]) for h in header) + " |")
    print(f"p50 at {args.entries:,} / p50 at 0: {ratio:.2f}x; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
