"""The responder's Redis client alone: CPU per GET through `resp.Link` (one server) and through
`cluster_client.ClusterLink` (a 6-node Redis Cluster), in the same run, with no HTTP around it.

The wrk figures of bench_cluster.py include the whole request and move with the machine's load;
this isolates what routing by slot adds (slot from the command, the reply wrapper, TCP instead of
a unix socket). GETs go out in batches of 50, as 50 connections' requests do.

    .venv/bin/python bench/responder/bench_cluster_client.py [--gets 200000] [--rounds 2]

`--failover` measures instead the answer gap when a primary is killed (SIGKILL) during a steady
stream of GETs over 3,000 keys: how long GETs for its slots failed (tryLater in the responder)
until the promoted replica answered, and that the other primaries' GETs never failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import redis  # noqa: E402

from shirushi.cache import records  # noqa: E402
from shirushi.responder import resp, respwire  # noqa: E402
from shirushi.responder.cluster_client import ClusterLink  # noqa: E402
from shirushi.responder.lookup import Route  # noqa: E402
from support.ocsp_pki import RedisProcess, free_port  # noqa: E402
from support.redis_cluster import RedisCluster  # noqa: E402

KEY = records.response_key("0123456789abcdef", "sha1", (1 << 158) | 12345).encode()
GET = respwire.command(b"GET", KEY)


async def measure(
    make: Callable[[asyncio.AbstractEventLoop], Route], gets: int, batch: int = 50
) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    link = make(loop)
    link.kick()
    deadline = time.monotonic() + 20
    while link.conn is None:
        assert time.monotonic() < deadline, "no connection"
        link.check(loop.time())
        await asyncio.sleep(0.01)
    cpu, wall = time.process_time(), time.monotonic()
    for _ in range(gets // batch):
        done = loop.create_future()
        left = [batch]

        def reply(value: respwire.Reply, done: asyncio.Future[None] = done, left: list[int] = left) -> None:
            assert isinstance(value, bytes)
            left[0] -= 1
            if not left[0]:
                done.set_result(None)

        for _ in range(batch):
            link.send(GET, reply)
        await done
    result = (time.process_time() - cpu) / gets * 1e6, (time.monotonic() - wall) / gets * 1e6
    link.close()
    return result


async def failover(cluster: RedisCluster, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    keys = [records.response_key("0123456789abcdef", "sha1", s).encode() for s in range(1, 3001)]
    client = cluster.client()
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, b"x" * 1500)
    pipe.execute()
    cluster.replicated()
    victim = cluster.primary_of(keys[0])
    on_victim = {k for k in keys if cluster.primary_of(k) is victim}
    client.close()
    link = ClusterLink(loop, [("127.0.0.1", cluster.nodes[0].port)], resp.Address("redis://127.0.0.1/"), 2.0)
    link.kick()
    while link.conn is None:
        link.check(loop.time())
        await asyncio.sleep(0.01)
    failed_victim: list[float] = []
    failed_other = 0
    why: Counter[str] = Counter()
    right = 0
    killed_at = 0.0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        link.check(loop.time())
        if not killed_at and time.monotonic() - started > 2:
            victim.kill()
            killed_at = time.monotonic()
        done: asyncio.Future[None] = loop.create_future()
        pending = [len(keys)]
        for key in keys:

            def reply(
                value: respwire.Reply, key: bytes = key, done: asyncio.Future[None] = done, pending: list[int] = pending
            ) -> None:
                nonlocal failed_other, right
                if isinstance(value, bytes):
                    right += 1
                elif key in on_victim:
                    failed_victim.append(time.monotonic())
                else:
                    failed_other += 1
                    why[
                        value.message.split(b" ")[0].decode() if isinstance(value, respwire.RespError) else "FAILED"
                    ] += 1
                pending[0] -= 1
                if not pending[0]:
                    done.set_result(None)

            if not link.send(respwire.command(b"GET", key), reply):
                reply(None)
        await done
        await asyncio.sleep(0.01)
    link.close()
    gap = (max(failed_victim) - killed_at) if failed_victim else 0.0
    print(f"\nkilled {victim.address} (owner of {len(on_victim)} of {len(keys)} keys), node timeout 1 s")
    print(f"GETs for its slots failed until {gap:.2f} s after the kill")
    print(f"GETs for other slots failed: {failed_other} {dict(why)}")
    print(f"answered: {right}, failed for the killed primary's slots: {len(failed_victim)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--failover", action="store_true", help="measure the answer gap of a failover instead")
    parser.add_argument(
        "--full-coverage", default="yes", choices=("yes", "no"), help="cluster-require-full-coverage (--failover)"
    )
    args = parser.parse_args()
    if args.failover:
        with (
            tempfile.TemporaryDirectory(prefix="shirushi-bench-failover-") as tmp,
            RedisCluster(Path(tmp), extra=("--cluster-require-full-coverage", args.full_coverage)) as cluster,
        ):
            print(f"cluster-require-full-coverage {args.full_coverage}")
            uvloop.run(failover(cluster))
        return 0
    with tempfile.TemporaryDirectory(prefix="shirushi-bench-client-") as tmp:
        directory = Path(tmp)
        port = free_port()
        tcp = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            with RedisProcess(directory / "single") as single, RedisCluster(directory / "cluster") as cluster:
                tcp_client = redis.Redis(port=port)
                for _ in range(200):
                    try:
                        tcp_client.ping()
                        break
                    except redis.ConnectionError:
                        time.sleep(0.05)
                for client in (single.client(), cluster.client(), tcp_client):
                    client.set(KEY, b"x" * 1500)
                    client.close()
                seed = [("127.0.0.1", cluster.nodes[0].port)]
                cases: dict[str, Callable[[asyncio.AbstractEventLoop], Route]] = {
                    "single (unix socket)": lambda loop: resp.Link(loop, resp.Address(single.url), 5.0),
                    "single (TCP)": lambda loop: resp.Link(loop, resp.Address(f"redis://127.0.0.1:{port}/"), 5.0),
                    "cluster (TCP)": lambda loop: ClusterLink(loop, seed, resp.Address("redis://127.0.0.1/"), 5.0),
                }
                results: dict[str, list[tuple[float, float]]] = {}
                for _ in range(args.rounds):
                    for name, make in cases.items():
                        results.setdefault(name, []).append(uvloop.run(measure(make, args.gets)))
        finally:
            tcp.terminate()
            tcp.wait(timeout=10)
    print(
        f"\n{args.gets} GETs of 1500 bytes per run, {args.rounds} rounds (best shown); load {os.getloadavg()[0]:.1f}\n"
    )
    print("| client | CPU µs per GET (client process) | wall µs per GET | ratio of CPU to single (TCP) |")
    print("| --- | ---: | ---: | ---: |")
    base = min(r[0] for r in results["single (TCP)"])
    for name, runs in results.items():
        cpu = min(r[0] for r in runs)
        wall = min(r[1] for r in runs)
        print(f"| {name} | {cpu:.2f} | {wall:.2f} | {cpu / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
