"""`shirushi archive export` and `archive verify` of N certificates and N audit records.

A fresh data directory (`shirushi init`, SQLite), N certificate rows seeded straight into the
store (each carrying the issuing CA's DER, so files have a real certificate's size) and one
issuance-sized audit record (about 1.5 KB of detail) per certificate, then the CLI is timed in a
subprocess: the export (2N certificate files, JSON Lines, the audit chain, the manifest), then
`archive verify`. References in the same run, on the export's own files: `cp -r` of the export
directory (the same files written by a stock tool) and `sha256sum -c` of its manifest (the same
bytes hashed by coreutils).

    .venv/bin/python bench/archive/bench_export.py            # --count N (default 50,000)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how the store keeps UTC times in SQLite


def timed(args: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def seed(data: Path, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    stamp, not_after = now.strftime(FORMAT), (now + dt.timedelta(days=90)).strftime(FORMAT)
    detail = json.dumps({"csr": "x" * 1200, "door": "api", "kind": "server", "lint_warnings": ["w" * 60] * 4})
    with sqlite3.connect(data / "shirushi.db") as db:
        issuer_id, der = db.execute("select id, certificate from issuers where name = 'issuing-ca'").fetchone()
        rows = []
        for i in range(count):
            serial = format(secrets.randbits(159) | 1 << 158, "x")
            rows.append(
                (
                    issuer_id,
                    serial,
                    der,
                    f"CN=s{i}.example.jp",
                    f"s{i}.example.jp",
                    stamp,
                    not_after,
                    secrets.token_hex(32),
                    stamp,
                )
            )
        db.executemany(
            "insert into certificates (issuer_id, serial, der, subject, dns_names, not_before, not_after,"
            " spki_sha256, kind, created_at, status_version, crl_shown_after_expiry)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, 'server', ?, 0, 0)",
            rows,
        )
        db.executemany(
            "insert into audit (at, action, issuer_id, serial, detail) values (?, 'issue', ?, ?, ?)",
            [(stamp, issuer_id, r[1], detail) for r in rows],
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
        env.update(
            SHIRUSHI_DATA_DIR=str(root / "data"),
            SHIRUSHI_METRICS__LISTEN="",
            SHIRUSHI_REDIS__URL=f"unix://{root}/none.sock",
        )
        cli = [sys.executable, "-m", "shirushi"]
        subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
        seed(root / "data", args.count)
        out = root / "export"
        export = timed([*cli, "archive", "export", "--out", str(out)], env=env)
        files = sum(1 for p in out.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / (1 << 20)
        verify = timed([*cli, "archive", "verify", str(out)], env=env)
        copy = timed(["cp", "-r", str(out), str(root / "copy")])
        sums = timed(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=out)
        print(f"certificates {args.count}, audit rows {args.count}, files {files}, {size:.0f} MiB")
        print(f"| export | {export:.1f} | {export / copy:.1f} x cp -r |")
        print(f"| verify | {verify:.1f} | {verify / sums:.1f} x sha256sum -c |")
        print(f"| cp -r of the export (reference) | {copy:.1f} | 1 |")
        print(f"| sha256sum -c of the manifest (reference) | {sums:.1f} | 1 |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
