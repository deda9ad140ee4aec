"""What one refilled response costs, stage by stage, in CPU microseconds.

The full load (presign/presigner.py) scans the store in the serve process and hands batches of
rows to the worker processes, each of which signs its batch and writes the records to Redis
itself. This runs the same stages one after the other in one process, on N seeded certificates
and a private redis-server on a unix socket, and reports each stage's CPU time per response (two
per certificate: the SHA-1 and the SHA-256 CertID): this process's `time.process_time()` for the
scan, `sign_rows` and the writer's client side, and redis-server's own CPU time (/proc) for what
it does with the writes. `sign_rows` is the signer reference `bench_cold.py` uses; everything
else is what the refill adds to it. The report says whether redis-py packs and parses with
hiredis (installed with the package) or in Python.

    .venv/bin/python bench/responder/bench_refill_stages.py [--certs 20000] [--signer-key ecdsa-p256]

Only a unix socket; the redis-server started here is stopped before it exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import redis.utils  # noqa: E402

from shirushi import config  # noqa: E402
from shirushi.backend import Backend  # noqa: E402
from shirushi.presign.presigner import sign_rows  # noqa: E402
from support.ocsp_pki import RedisProcess  # noqa: E402
from support.seed import seed_certificates  # noqa: E402
from support.serving import Site  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat, utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=20_000)
    parser.add_argument("--signer-key", default="rsa-2048", help="ocsp.signer_key: rsa-2048 or ecdsa-p256")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp, RedisProcess(Path(tmp) / "redis") as server:
        assert server.proc is not None
        site = Site(Path(tmp), SHIRUSHI_OCSP__SIGNER_KEY=args.signer_key, SHIRUSHI_REDIS__URL=server.url)
        assert site.cli("init").returncode == 0
        seed_certificates(site.data, args.certs)
        env = {k: v for k, v in site.env.items() if k.startswith("SHIRUSHI_")}
        backend = Backend(config.load(None, environ=env))
        try:
            print(stages(backend, server.proc.pid, args.signer_key))
        finally:
            backend.close()


def stages(backend: Backend, redis_pid: int, signer_key: str) -> str:
    presigner = backend.presigner
    ctx = presigner.context()
    now = dt.datetime.now(dt.UTC)
    cost: dict[str, float] = {}

    started = time.process_time()
    batches = list(backend.store.statuses(ctx.issuer_id, valid_at=now, batch=presigner.batch))
    cost["store scan"] = time.process_time() - started
    started = time.process_time()
    results = [sign_rows(rows, ctx, presigner.signer, now) for rows in batches]
    cost["sign_rows (the reference)"] = time.process_time() - started
    before = cpu_seconds(redis_pid)
    started = time.process_time()
    for entries, due in results:
        presigner.writer.put(ctx.issuer_id, entries, due)
    cost["write, client (worker)"] = time.process_time() - started
    time.sleep(0.2)  # redis-server's stat is updated on the clock tick
    cost["write, redis-server"] = cpu_seconds(redis_pid) - before

    responses = sum(len(entries) for entries, _ in results)
    per = {stage: seconds / responses * 1e6 for stage, seconds in cost.items()}
    reference = per["sign_rows (the reference)"]
    added = sum(per.values()) - reference
    packer = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "Python"
    lines = [f"{signer_key}, {responses} responses, redis-py with {packer}, CPU microseconds per response:"]
    lines += [f"  {stage:28} {us:8.2f}" for stage, us in per.items()]
    bound = reference / (reference + added)
    lines.append(f"  {'added to sign_rows':28} {added:8.2f}  (bound: refill / signer <= {bound:.2f})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
