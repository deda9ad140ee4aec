"""The responder's Redis client alone: CPU per GET through `resp.Link` (one server) and through
`cluster_client.ClusterLink` (a 6-node Redis Cluster), in the same run, with no HTTP around it.

The wrk figures of bench_cluster.py include the whole request and move with the machine's load;
this isolates what routing by slot adds (slot from the command, the reply wrapper, TCP instead of
a unix socket). GETs go out in batches of 50, as 50 connections' requests do.

    .venv/bin/python bench/responder/bench_cluster_client.py [--gets 200000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
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
