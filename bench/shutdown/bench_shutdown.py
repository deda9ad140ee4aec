"""How fast `shirushi serve` stops: SIGTERM to exit during the start-up presign, and SIGKILL to
the last child process gone.

Makes a data directory (`shirushi init`), seeds N certificates straight into the SQLite store
(tests/support/seed.py), starts `serve` (embedded Redis, default settings) and, once the start-up
presign has written `--into` seconds' worth of responses, sends the signal. Cases, one after
the other, each `--rounds` times:

* `sigterm-presign`: SIGTERM during the start-up presign of N certificates;
* `sigkill-presign`: SIGKILL at the same moment; time until no process of the data directory
  (redis-server, signing workers) is left;
* `sigterm-serving` (the reference): SIGTERM to a `serve` that is up and idle, on a data
  directory of `--small` certificates.

"exit s" is measured from outside (signal sent to process reaped); "logged s" is the line
`serve` logs (`shirushi: stopped signal=SIGTERM seconds=N`). The presign rate seen before the stop gives what a
stop that waited for the presign to finish would have cost (N / rate).

    .venv/bin/python bench/shutdown/bench_shutdown.py [--certs 100000] [--rounds 3]

Only 127.0.0.1; every process started here is stopped (and checked gone) before it exits.
"""

from __future__ import annotations

import argparse
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from support.seed import seed_certificates  # noqa: E402
from support.serving import Site  # noqa: E402


def responses(site: Site) -> int:
    try:
        with redis.Redis(unix_socket_path=str(site.data / "redis.sock"), socket_timeout=5) as r:
            return int(r.dbsize())
    except redis.ConnectionError:
        return 0


def into_presign(site: Site, seconds: float) -> float:
    """Wait until the presign has run `seconds`; return its rate (certificates/s)."""
    deadline = time.monotonic() + 600
    while responses(site) < 10:
        if time.monotonic() > deadline or (site.proc is not None and site.proc.poll() is not None):
            raise RuntimeError(f"the start-up presign did not begin:\n{site.log()}")
        time.sleep(0.05)
    first, began = responses(site), time.monotonic()
    time.sleep(seconds)
    done = responses(site)
    return (done - first) / 2 / (time.monotonic() - began)  # two CertID hash algorithms each


def until_gone(site: Site, bound: float = 30.0) -> float:
    began = time.monotonic()
    while site.processes():
        if time.monotonic() - began > bound:
            raise RuntimeError(f"still running after {bound} s:\n{site.processes()}")
        time.sleep(0.02)
    return time.monotonic() - began


def stop(site: Site, sig: int) -> tuple[float, float | None]:
    """Send `sig`; (seconds until serve exited, seconds it logged or None)."""
    assert site.proc is not None
    sent = time.monotonic()
    site.proc.send_signal(sig)
    code = site.proc.wait(timeout=600)
    took = time.monotonic() - sent
    site.proc = None
    if sig == signal.SIGTERM and code != 0:
        raise RuntimeError(f"serve exited with {code}:\n{site.log()}")
    found = re.findall(r"^shirushi: stopped signal=\w+ seconds=([\d.]+)$", site.log(), re.M)
    return took, float(found[-1]) if found and sig == signal.SIGTERM else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=100, help="certificates of the reference site")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--into", type=float, default=5.0, help="seconds of presign before the signal")
    args = parser.parse_args()

    rows: dict[str, list[tuple[float, float | None, float]]] = {}
    rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-shutdown-") as tmp:
        big, small = Site(Path(tmp) / "big"), Site(Path(tmp) / "small")
        for site, count in ((big, args.certs), (small, args.small)):
            site.root.mkdir()
            if site.cli("init").returncode != 0:
                raise RuntimeError("shirushi init failed")
            seed_certificates(site.data, count)
        try:
            for _ in range(args.rounds):
                for name, sig in (("sigterm-presign", signal.SIGTERM), ("sigkill-presign", signal.SIGKILL)):
                    big.start(wait=False)
                    rates.append(into_presign(big, args.into))
                    took, logged = stop(big, sig)
                    rows.setdefault(name, []).append((took, logged, until_gone(big)))
                small.start(timeout=600)
                took, logged = stop(small, signal.SIGTERM)
                rows.setdefault("sigterm-serving", []).append((took, logged, until_gone(small)))
        finally:
            for site in (big, small):
                if site.proc is not None:
                    site.proc.kill()
                    site.proc.wait()
                until_gone(site)

    rate = statistics.median(rates)
    print(f"Python {platform.python_version()}, {args.certs:,} certificates, {args.rounds} round(s), median shown\n")
    print("| case | exit s (min-max) | logged s | last child gone after exit s |")
    print("| --- | ---: | ---: | ---: |")
    for name, runs in rows.items():
        exits = [r[0] for r in runs]
        logged = [r[1] for r in runs if r[1] is not None]
        shown = f"{statistics.median(logged):.2f}" if logged else "-"
        gone = statistics.median(r[2] for r in runs)
        print(f"| {name} | {statistics.median(exits):.2f} ({min(exits):.2f}-{max(exits):.2f}) | {shown} | {gone:.2f} |")
    print(
        f"\npresign rate before the stop: {rate:,.0f} certificates/s; a stop that waited for the "
        f"presign would have taken about {args.certs / rate:,.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
