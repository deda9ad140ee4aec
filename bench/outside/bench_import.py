"""Importing an outside CA's OpenSSL `ca` index of N lines with `shirushi import --openssl-index`.

A fresh data directory (`shirushi init`, SQLite), an outside CA registered in the store, an index
of N lines written like `openssl ca` writes them (V lines, and every tenth R with a reason),
then the CLI is timed in a subprocess, three ways in the same run:
- first import: every line new (N inserts, N/10 revocations with their outbox and audit rows);
- again, unchanged: nothing to write (the "run it again" case of `serve`'s follow mode);
- again after 1,000 new revocations at the end of the index.
Reference in the same run: reading and splitting the same file in Python alone (the floor any
parser here pays). No signer certificate is installed, so nothing is signed: presigning follows
the presigner's own rate (bench/signing).

    .venv/bin/python bench/outside/bench_import.py            # --lines N (default 1,000,000)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REASONS = ("keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified")


def ca_certificate() -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Outside CA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def write_index(path: Path, lines: int, extra_revoked: int = 0) -> None:
    with open(path, "w") as fh:
        for i in range(1, lines + 1):
            serial = format(0x1000 + i, "X").rjust(16, "0")
            revoked = i % 10 == 0 or i > lines - extra_revoked
            if revoked:
                fh.write(f"R\t300101000000Z\t260101000000Z,{REASONS[i % 5]}\t{serial}\tunknown\t/CN=host{i}.example\n")
            else:
                fh.write(f"V\t300101000000Z\t\t{serial}\tunknown\t/CN=host{i}.example\n")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{args}: {result.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outside-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
        env["SHIRUSHI_DATA_DIR"] = str(root / "data")
        cli = [sys.executable, "-m", "shirushi"]
        subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
        os.environ["SHIRUSHI_DATA_DIR"] = env["SHIRUSHI_DATA_DIR"]
        from shirushi.asn1.keys import issuer_id
        from shirushi.config import load
        from shirushi.store import Store
        from shirushi.store.outside import add_issuer

        ca = ca_certificate()
        store = Store.open(load(None, env).database_url, create=False)
        der = ca.public_bytes(serialization.Encoding.DER)
        add_issuer(store, issuer_id(ca), "bench", "CN=Bench Outside CA", der, dt.datetime.now(dt.UTC))
        store.close()
        index = root / "index.txt"
        write_index(index, args.lines)
        started = time.perf_counter()
        with open(index) as fh:
            fields = sum(len(line.split("\t")) for line in fh)
        floor = time.perf_counter() - started
        assert fields == 6 * args.lines
        command = [*cli, "import", "bench", "--openssl-index", str(index)]
        rows = [("read and split the file (reference)", floor, 0.0, "")]
        rows.append(("first import", *timed(command, env)))
        rows.append(("again, unchanged", *timed(command, env)))
        write_index(index, args.lines, extra_revoked=1000)
        rows.append(("again, 1,000 new revocations", *timed(command, env)))
        print(f"{args.lines:,} lines, {index.stat().st_size / 2**20:.0f} MiB index")
        print("| case | seconds | peak RSS MiB | output |\n| --- | ---: | ---: | --- |")
        for name, seconds, rss, out in rows:
            print(f"| {name} | {seconds:.1f} | {rss:.0f} | {out} |")


if __name__ == "__main__":
    main()
