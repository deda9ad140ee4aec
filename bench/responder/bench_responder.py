"""Responder vs nginx on 127.0.0.1: requests/s with wrk (1 thread, 50 connections, bounded time).

Starts a private redis-server, a test PKI (tests/support/ocsp_pki.py), one presigned response; then, one
after the other so they never compete for the CPU:

* nginx, one worker, serving the same DER as a static file with roughly the same headers;
* the responder (`shirushi.responder.run`) with 1 and with 2 workers, GET;
* the responder with 1 worker and the in-process L1 cache disabled (every answer from Redis);
* the responder with 1 worker, POST (wrk Lua script), the same request every time;
* the responder with 1 worker, POST with a random nonce in every request (nothing repeats);
* only when named in `--cases`: the responder with 1 and with 2 workers, GET, with
  `ocsp.access_log` on (`responder-1-log`, `responder-2-log`; a file in the temporary directory);
  after each such run the file must hold a line for every request wrk counted;
* only when named in `--cases`: the responder with 1 and with 2 workers, GET, with the metrics
  endpoint off (`responder-1-no-metrics`, `responder-2-no-metrics`: `metrics.listen = ""`, so
  the request tally does nothing); every other case serves metrics on a free port, as by default.

Prints a Markdown table (requests/s; CPU time of the server's processes per request, user and
system, read from /proc; ratio to nginx, or to the first case when nginx is not among `--cases`)
and checks that every reply was a 200 of the expected length. Each case runs
`--rounds` times, interleaved, and the median is shown.

    .venv/bin/python bench/responder/bench_responder.py [--duration 10] [--rounds 2] [--cases a,b]

Only 127.0.0.1 is loaded; every server started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from support.ocsp_pki import RedisProcess, build_pki, free_port, get_path  # noqa: E402

SERIAL = 0x1234567890ABCDEF


def nginx_conf(directory: Path, port: int, der_name: str) -> Path:
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
            rewrite ^ /{der_name} break;
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


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wrk(url: str, duration: int, script: Path | None = None, connections: int = 50) -> tuple[float, str, int]:
    """(requests/s, p99 latency, requests completed) of one wrk run."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60, check=True)
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)  # from the --latency distribution
    total = re.search(r"(\d+) requests in", out)
    assert total, out
    return float(match.group(1)), p99.group(1) if p99 else "?", int(total.group(1))


@dataclasses.dataclass(frozen=True)
class Run:
    rate: float  # requests/s
    p99: str  # latency, as wrk prints it
    requests: int  # completed, as wrk counted them
    user_us: float  # CPU time of the server's processes per request
    sys_us: float


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` and its children (the workers) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    user = system = 0.0
    for each in [pid, *map(int, children)]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def measure(server: int, url: str, duration: int, script: Path | None = None) -> Run:
    """One wrk run against the server whose main process is `server`."""
    user0, sys0 = cpu_seconds(server)
    rate, p99, requests = wrk(url, duration, script)
    user1, sys1 = cpu_seconds(server)
    return Run(rate, p99, requests, (user1 - user0) / requests * 1e6, (sys1 - sys0) / requests * 1e6)


def post_script(directory: Path, body: bytes) -> Path:
    script = directory / "post.lua"
    escaped = "".join(f"\\{b}" for b in body)
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = "{escaped}"\nwrk.headers["Content-Type"] = "application/ocsp-request"\n'
    )
    return script


def nonce_script(directory: Path, body: bytes) -> Path:
    """POST with a fresh random 16-octet nonce per request (the nonce is the last 16 octets), so
    no request repeats and the responder's decode memo cannot help: its slowest hot path."""
    script = directory / "post-nonce.lua"
    escaped = "".join(f"\\{b}" for b in body[:-16])
    script.write_text(
        f'local prefix = "{escaped}"\n'
        'local headers = {["Content-Type"] = "application/ocsp-request"}\n'
        "math.randomseed(os.time())\n"
        "request = function()\n"
        "  local t = {}\n"
        "  for i = 1, 16 do t[i] = string.char(math.random(0, 255)) end\n"
        '  return wrk.format("POST", "/", headers, prefix .. table.concat(t))\n'
        "end\n"
    )
    return script


def start_responder(
    directory: Path,
    redis_url: str,
    issuers: Path,
    workers: int,
    l1: bool,
    access_log: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
    env.update(
        {
            "SHIRUSHI_DATA_DIR": str(directory / "data"),
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_OCSP__ISSUERS": str(issuers),
            "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{port}",
            "SHIRUSHI_OCSP__WORKERS": str(workers),
            "SHIRUSHI_OCSP__ACCESS_LOG": str(access_log or ""),
            **(extra_env or {}),
        }
    )
    code = (
        "import sys\n"
        "from shirushi import config\n"
        "from shirushi.responder import Options, run\n"
        f"options = Options(l1_bytes={None if l1 else 0})\n"
        "sys.exit(run(config.load(None), ready=lambda h, p: print('ready', flush=True), options=options))\n"
    )
    log = open(directory / f"responder-{workers}-{l1}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=log)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError((directory / f"responder-{workers}-{l1}.log").read_text())
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


DEFAULT_CASES = (
    "nginx",
    "responder-1",
    "responder-2",
    "responder-1-no-l1",
    "responder-1-post",
    "responder-1-post-nonce",
)
CASES = (*DEFAULT_CASES, "responder-1-log", "responder-2-log", "responder-1-no-metrics", "responder-2-no-metrics")
# (without, with): the ratios printed after the table.
COMPARED = (
    ("responder-1", "responder-1-log", "access log on / off"),
    ("responder-2", "responder-2-log", "access log on / off"),
    ("responder-1-no-metrics", "responder-1", "metrics on / off"),
    ("responder-2-no-metrics", "responder-2", "metrics on / off"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per case, interleaved (default 2)")
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated, from {', '.join(CASES)} (default: all but the -log ones)",
    )
    args = parser.parse_args()
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown or not cases:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    for tool in ("wrk", "nginx", "redis-server"):
        if shutil.which(tool) is None and not Path("/usr/sbin/nginx").exists():
            raise SystemExit(f"{tool} is not installed")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    with tempfile.TemporaryDirectory(prefix="shirushi-bench-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # nginx workers run as nobody
        (directory / "tmp").mkdir()
        pki = build_pki(directory / "pki", "http://127.0.0.1/")
        results: dict[str, list[Run]] = {}
        with RedisProcess(directory / "redis") as redis_server:
            client: redis.Redis = redis_server.client()
            record = pki.store(client, SERIAL)["sha1"]
            client.close()
            der_name = "resp.der"
            (directory / der_name).write_bytes(record.der)
            (directory / der_name).chmod(0o644)
            request = pki.request_der(SERIAL)
            path = get_path(request)
            script = post_script(directory, request)
            unique = nonce_script(directory, pki.request_der(SERIAL, nonce=b"\x00" * 16))

            nginx_port = free_port()
            conf = nginx_conf(directory, nginx_port, der_name)
            for _ in range(args.rounds):
                for case in cases:
                    if case == "nginx":
                        proc = subprocess.Popen(
                            [nginx, "-c", str(conf), "-p", str(directory)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        try:
                            wait_port(nginx_port)
                            check_body(f"http://127.0.0.1:{nginx_port}{path}", record.der)
                            url = f"http://127.0.0.1:{nginx_port}{path}"
                            results.setdefault(case, []).append(measure(proc.pid, url, args.duration))
                        finally:
                            proc.send_signal(signal.SIGQUIT)
                            proc.wait(timeout=15)
                        continue
                    workers = 2 if case.startswith("responder-2") else 1
                    access_log = directory / "access.log" if case.endswith("-log") else None
                    metrics = "" if case.endswith("-no-metrics") else f"127.0.0.1:{free_port()}"
                    rproc, port = start_responder(
                        directory,
                        redis_server.url,
                        pki.directory / "issuers.pem",
                        workers,
                        l1="no-l1" not in case,
                        access_log=access_log,
                        extra_env={"SHIRUSHI_METRICS__LISTEN": metrics},
                    )
                    try:
                        url = f"http://127.0.0.1:{port}{path}"
                        check_body(url, record.der)
                        if "post" in case:
                            lua = unique if case.endswith("nonce") else script
                            results.setdefault(case, []).append(
                                measure(rproc.pid, f"http://127.0.0.1:{port}/", args.duration, lua)
                            )
                        else:
                            results.setdefault(case, []).append(measure(rproc.pid, url, args.duration))
                    finally:
                        stop(rproc)
                    if access_log is not None:
                        check_access_log(access_log, results[case][-1].requests + 1)  # + the curl check

        base_case = "nginx" if "nginx" in cases else cases[0]
        base = statistics.median(r.rate for r in results[base_case])
        print(
            f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average before the run {os.getloadavg()[0]:.1f}"
        )
        print(
            f"wrk -t1 -c50 -d{args.duration}s, {args.rounds} round(s), median shown; response {len(record.der)} bytes\n"
        )
        print(
            f"| server | requests/s (median) | runs | p99 latency (last run) "
            f"| server CPU µs/request, user + sys (median) | ratio to {base_case} |"
        )
        print("| --- | ---: | --- | ---: | ---: | ---: |")
        for case in cases:
            rates = [r.rate for r in results[case]]
            median = statistics.median(rates)
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            user = statistics.median(r.user_us for r in results[case])
            system = statistics.median(r.sys_us for r in results[case])
            print(
                f"| {case} | {median:,.0f} | {runs} | {results[case][-1].p99} | {user:.1f} + {system:.1f} "
                f"| {median / base:.2f} |"
            )
        for off, on, what in COMPARED:
            if off in results and on in results:
                ratio = statistics.median(r.rate for r in results[on]) / statistics.median(r.rate for r in results[off])
                pairs = ", ".join(f"{a.rate / b.rate:.2f}" for a, b in zip(results[on], results[off], strict=True))
                print(f"\n{what}: {on} / {off} = {ratio:.2f} (per round: {pairs})")
    return 0


def check_access_log(path: Path, at_least: int) -> None:
    """Every request wrk counted has its line (the responder may have answered a few more that
    wrk cut off at the end); then the file goes, so the next run starts empty."""
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    path.unlink()
    if lines < at_least:
        raise RuntimeError(f"access log holds {lines} lines for {at_least} requests")


def check_body(url: str, expected: bytes) -> None:
    done = subprocess.run(["curl", "-s", "--max-time", "5", url], capture_output=True, timeout=30, check=True)
    if done.stdout != expected:
        raise RuntimeError(f"{url} did not return the stored response but {done.stdout[:16].hex()}...")


if __name__ == "__main__":
    raise SystemExit(main())
