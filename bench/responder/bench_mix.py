"""Responder vs nginx over a realistic working set: uniform random requests over N distinct CertIDs.

The set (bench/responder/mixset.py): N CertIDs, 3 SHA-1 : 1 SHA-256, each asked by GET or by
POST; a record under its own Redis key for each. wrk (1 thread, 50 connections) sends the requests
uniformly at random from a Lua table. nginx (one worker) serves one file for every path as the
reference, POST included (`error_page 405 =200`); the responder runs one worker, with its
in-process cache at `--cache-mb`. Both run side by side but are measured one after the other,
interleaved over `--rounds`; the responder is warmed by one run first (its cache fills from Redis),
and every reply must be a 2xx. Also measured: one GET repeated (the fast path), and p99 latency at
a fixed offered load (each connection waits `--delay-ms` between requests, wrk's `delay()`).
Before measuring, 300 random requests are checked: the responder's body must be the stored one.

    .venv/bin/python bench/responder/bench_mix.py [--count 100000] [--duration 10] [--rounds 2]

Only 127.0.0.1 is loaded; every server started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))
sys.path.insert(0, str(HERE))

from bench_responder import Run, measure, start_responder, stop, wait_port  # noqa: E402
from mixset import build_items, load_records, write_wrk_script  # noqa: E402

from support.ocsp_pki import RedisProcess, build_pki, free_port  # noqa: E402


def nginx_conf(directory: Path, port: int) -> Path:
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 30s;
    client_body_temp_path {directory}/tmp;
    proxy_temp_path {directory}/tmp;
    fastcgi_temp_path {directory}/tmp;
    uwsgi_temp_path {directory}/tmp;
    scgi_temp_path {directory}/tmp;
    merge_slashes off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=60s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {directory};
        location / {{
            # The static module refuses POST with 405; answer it with the file like a GET.
            error_page 405 =200 /resp.der;
            rewrite ^ /resp.der break;
            default_type application/ocsp-response;
            types {{ }}
            add_header Cache-Control "max-age=3600, public, no-transform, must-revalidate";
            expires 96h;
        }}
    }}
}}
"""
    )
    return conf


def delayed(script: Path, delay_ms: int) -> Path:
    out = script.with_name(script.stem + "-delay.lua")
    out.write_text(script.read_text() + f"\ndelay = function()\n  return {delay_ms}\nend\n")
    return out


def single_script(directory: Path, raw: bytes) -> Path:
    out = directory / "single.lua"
    escaped = "".join(f"\\{b}" for b in raw)
    out.write_text(f'local r = "{escaped}"\nrequest = function()\n  return r\nend\n')
    return out


def check(port: int, items: list, ders: dict[int, bytes], sample: int = 300) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for item in random.Random(3).sample(items, sample):
        if item.method == "GET":
            conn.request("GET", item.path)
        else:
            conn.request("POST", "/", item.body, {"Content-Type": "application/ocsp-request"})
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200 or body != ders[item.serial]:
            raise RuntimeError(f"serial {item.serial:x} ({item.method}): {reply.status}, {body[:16].hex()}")
    conn.close()


def record_worker(supervisor: int, out: Path, url: str, duration: int, script: Path) -> None:
    """Sample the (one) worker process with py-spy while wrk runs the mix."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    worker = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()[0]
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "--native",
            "--format",
            "raw",
            "--rate",
            "250",
            "--pid",
            worker,
            "--duration",
            str(duration),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # py-spy attaches first
    measure(int(worker), url, duration, script)
    recorder.wait(timeout=duration + 30)
    print(f"py-spy: collapsed stacks of worker {worker} in {out}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100000, help="distinct CertIDs (default 100000)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per case, interleaved (default 2)")
    parser.add_argument("--cache-mb", type=int, default=384, help="ocsp.cache_mb of the responder (default 384)")
    parser.add_argument("--delay-ms", type=int, default=5, help="per-connection pause for the p99 runs (default 5)")
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        type=Path,
        help="also record the worker with py-spy (native frames included) during one more mix run, "
        "collapsed stacks to OUT (`pip install py-spy`)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory(prefix="shirushi-mix-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        (directory / "tmp").mkdir()
        pki = build_pki(directory / "pki", "http://127.0.0.1/")
        started = time.monotonic()
        items = build_items(pki, args.count, "127.0.0.1")
        print(f"{len(items)} requests built in {time.monotonic() - started:.1f} s", flush=True)
        with RedisProcess(directory / "redis") as redis_server:
            client = redis_server.client()
            started = time.monotonic()
            ders = load_records(pki, client, items)
            used = int(client.info("memory")["used_memory"])
            print(f"records loaded in {time.monotonic() - started:.1f} s; Redis used_memory {used >> 20} MiB")
            client.close()
            (directory / "resp.der").write_bytes(next(iter(ders.values())))
            (directory / "resp.der").chmod(0o644)
            mix = write_wrk_script(directory, items)
            single = single_script(directory, items[0].raw)
            nginx_port = free_port()
            nginx_proc = subprocess.Popen(
                [nginx, "-c", str(nginx_conf(directory, nginx_port)), "-p", str(directory)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            responder, port = start_responder(
                directory,
                redis_server.url,
                pki.directory / "issuers.pem",
                1,
                l1=True,
                extra_env={"SHIRUSHI_OCSP__CACHE_MB": str(args.cache_mb)},
            )
            results: dict[str, list[Run]] = {}
            try:
                wait_port(nginx_port)
                check(port, items, ders)
                for target in (nginx_port, port):  # warm-up: the responder's cache fills from Redis
                    measure(responder.pid, f"http://127.0.0.1:{target}/", args.duration, mix)
                cases = {
                    "mix": mix,
                    f"mix-delay-{args.delay_ms}ms": delayed(mix, args.delay_ms),
                    "single-get": single,
                }
                for _ in range(args.rounds):
                    for case, script in cases.items():
                        for name, target, pid in (
                            ("nginx", nginx_port, nginx_proc.pid),
                            ("responder", port, responder.pid),
                        ):
                            run = measure(pid, f"http://127.0.0.1:{target}/", args.duration, script)
                            results.setdefault(f"{case} {name}", []).append(run)
                check(port, items, ders)
                if args.py_spy is not None:
                    record_worker(responder.pid, args.py_spy, f"http://127.0.0.1:{port}/", args.duration, mix)
                rss = int(Path(f"/proc/{responder.pid}/status").read_text().split("VmRSS:")[1].split()[0])
                children = Path(f"/proc/{responder.pid}/task/{responder.pid}/children").read_text().split()
                for child in children:
                    status = Path(f"/proc/{child}/status").read_text()
                    rss += int(status.split("VmRSS:")[1].split()[0])
            finally:
                stop(responder)
                nginx_proc.send_signal(signal.SIGQUIT)
                nginx_proc.wait(timeout=15)
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; {args.count} distinct CertIDs, cache_mb {args.cache_mb}, "
        f"responder RSS after the runs {rss >> 10} MiB"
    )
    print(f"wrk -t1 -c50 -d{args.duration}s, {args.rounds} round(s) interleaved, median\n")
    print("| traffic | nginx req/s | responder req/s | ratio | p99 nginx | p99 responder | runs (responder) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for case in cases:
        ngx = results[f"{case} nginx"]
        ours = results[f"{case} responder"]
        a = statistics.median(r.rate for r in ngx)
        b = statistics.median(r.rate for r in ours)
        runs = ", ".join(f"{r.rate:,.0f}" for r in ours)
        print(f"| {case} | {a:,.0f} | {b:,.0f} | {b / a:.2f} | {ngx[-1].p99} | {ours[-1].p99} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
