"""The responder on one Redis server vs on a Redis Cluster, in the same run: requests/s with wrk.

Starts a private redis-server (unix socket, as `serve` embeds it) and a 6-node Redis Cluster
on loopback TCP (3 primaries, 3 replicas, tests/support/redis_cluster.py), stores the same
presigned response in both, and measures one after the other (never competing for the CPU),
interleaved over `--rounds`:

* `single-no-l1` / `cluster-no-l1`: 1 worker, the in-process L1 cache off, so every request is
  a GET through the pipelined client (resp.Link, or cluster_client.ClusterLink routing by slot);
* `single-tcp-no-l1`: the single server over loopback TCP, the transport the cluster uses, to
  separate the cost of TCP from the cost of routing;
* `single` / `cluster`: 1 worker with the L1 cache (the usual hot path; Redis is asked rarely).

Prints a Markdown table with requests/s, server CPU per request and the ratio to `single-no-l1`
(or the first case). Bench functions come from bench_responder.py.

    .venv/bin/python bench/responder/bench_cluster.py [--duration 10] [--rounds 2]

Only 127.0.0.1 is used; every server started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import redis  # noqa: E402
from bench_responder import Run, check_body, measure, start_responder, stop  # noqa: E402

from shirushi.cache import records  # noqa: E402
from support.ocsp_pki import RedisProcess, build_pki, free_port, get_path  # noqa: E402
from support.redis_cluster import RedisCluster  # noqa: E402

SERIAL = 0x1234567890ABCDEF
CASES = ("single-no-l1", "single-tcp-no-l1", "cluster-no-l1", "single", "cluster")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per case, interleaved (default 2)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    args = parser.parse_args()
    cases = args.cases.split(",")
    if set(cases) - set(CASES):
        parser.error(f"unknown case(s): {', '.join(sorted(set(cases) - set(CASES)))}")

    with tempfile.TemporaryDirectory(prefix="shirushi-bench-cluster-") as tmp:
        directory = Path(tmp)
        pki = build_pki(directory / "pki", "http://127.0.0.1/")
        tcp_port = free_port()
        results: dict[str, list[Run]] = {}
        with RedisProcess(directory / "redis") as single, RedisCluster(directory / "cluster") as cluster:
            tcp = subprocess.Popen(
                ["redis-server", "--port", str(tcp_port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
                stdout=subprocess.DEVNULL,
            )
            try:
                first = single.client()
                record = pki.store(first, SERIAL, publish=False)["sha1"]
                pki.mark_complete(first)
                # The very same bytes in the other two, so that every case serves one DER.
                key = records.response_key(pki.issuer_id, "sha1", SERIAL)
                value, ttl = first.get(key), first.ttl(key)
                first.close()
                tcp_client = redis.Redis(port=tcp_port)
                for _ in range(200):
                    try:
                        tcp_client.ping()
                        break
                    except redis.ConnectionError:
                        time.sleep(0.05)
                for client in (cluster.client(), tcp_client):
                    client.set(key, value, ex=ttl)  # type: ignore[arg-type]
                    pki.mark_complete(client)
                    client.close()
                path = get_path(pki.request_der(SERIAL))
                for _ in range(args.rounds):
                    for case in cases:
                        extra: dict[str, str] = {}
                        url_for = single.url
                        if case.startswith("cluster"):
                            extra = {"SHIRUSHI_REDIS__MODE": "cluster", "SHIRUSHI_REDIS__NODES": cluster.seeds}
                            url_for = ""
                        elif case.startswith("single-tcp"):
                            url_for = f"redis://127.0.0.1:{tcp_port}/0"
                        rproc, port = start_responder(
                            directory,
                            url_for,
                            pki.directory / "issuers.pem",
                            1,
                            l1=not case.endswith("no-l1"),
                            extra_env=extra,
                        )
                        try:
                            url = f"http://127.0.0.1:{port}{path}"
                            check_body(url, record.der)
                            results.setdefault(case, []).append(measure(rproc.pid, url, args.duration))
                        finally:
                            stop(rproc)
            finally:
                tcp.terminate()
                tcp.wait(timeout=10)

        base_case = cases[0]
        base = statistics.median(r.rate for r in results[base_case])
        print(
            f"\nMachine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
            f"load average before the run {os.getloadavg()[0]:.1f}"
        )
        print(f"wrk -t1 -c50 -d{args.duration}s, {args.rounds} round(s), median shown; 1 responder worker\n")
        print(
            f"| case | requests/s (median) | runs | p99 latency (last run) "
            f"| server CPU µs/request, user + sys (median) | ratio to {base_case} |"
        )
        print("| --- | ---: | --- | ---: | ---: | ---: |")
        for case in cases:
            rates = [r.rate for r in results[case]]
            median = statistics.median(rates)
            user = statistics.median(r.user_us for r in results[case])
            system = statistics.median(r.sys_us for r in results[case])
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            print(
                f"| {case} | {median:,.0f} | {runs} | {results[case][-1].p99} | {user:.1f} + {system:.1f} "
                f"| {median / base:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
