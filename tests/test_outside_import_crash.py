"""A first import killed with SIGKILL while it writes (the bulk path: indexes dropped and rebuilt
in its one transaction) leaves the SQLite store as it was: what an earlier import brought is
all there, the indexes are all there, the database passes `PRAGMA integrity_check`; running the
import again then completes it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shirushi.asn1.keys import issuer_id
from shirushi.store import Store
from shirushi.store.outside import add_issuer
from support.pki import cli_env, run_cli

pytestmark = pytest.mark.e2e

LINES = 120_000  # past store.bulkload.REBUILD_ROWS, so the rebuild path runs


def write_index(path: Path, lines: int) -> None:
    with open(path, "w") as fh:
        for i in range(1, lines + 1):
            serial = format(0x1000 + i, "X")
            if i % 10 == 0:
                fh.write(f"R\t300101000000Z\t260101000000Z,superseded\t{serial}\tunknown\t/CN=h{i}\n")
            else:
                fh.write(f"V\t300101000000Z\t\t{serial}\tunknown\t/CN=h{i}\n")


def state(db: Path) -> tuple[int, int, list[str], str]:
    """(certificates, revoked, index names, integrity_check)"""
    with sqlite3.connect(db) as conn:
        query = "SELECT count(*), count(revoked_at) FROM certificates WHERE kind = 'outside'"
        count, revoked = conn.execute(query).fetchone()
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'certificates' ORDER BY name"
        )]  # fmt: skip
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return count, revoked, names, check


def test_kill_9_mid_import_then_rerun(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = cli_env(data)
    assert run_cli(["init"], env).returncode == 0
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Crash Outside CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )  # fmt: skip
    db = data / "shirushi.db"
    store = Store.open(f"sqlite:///{db}", create=False)
    add_issuer(store, issuer_id(ca), "crash", "CN=Crash Outside CA", ca.public_bytes(serialization.Encoding.DER), now)
    store.close()
    index = tmp_path / "index.txt"
    write_index(index, 1000)
    first = run_cli(["import", "crash", "--openssl-index", str(index)], env)
    assert first.returncode == 0, first.stderr
    earlier = state(db)
    assert earlier[:2] == (1000, 100) and earlier[3] == "ok"
    assert {"ix_certificates_serial", "ix_certificates_owed", "ix_certificates_spki"} <= set(earlier[2])

    # The same 1,000 lines and many more: a bulk first import of the new ones.
    write_index(index, LINES)
    wal = Path(f"{db}-wal")
    start = wal.stat().st_size if wal.exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "shirushi", "import", "crash", "--openssl-index", str(index)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed once the transaction's pages reach the WAL (its commit being written, or a spill):
    # the WAL then holds frames of a transaction without its commit record.
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > start + (1 << 20):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert state(db) == earlier  # nothing of the killed import, nothing lost, indexes intact
    again = run_cli(["import", "crash", "--openssl-index", str(index)], env)
    assert again.returncode == 0, again.stderr
    assert f"{LINES} seen, {LINES - 1000} new" in again.stdout
    count, revoked, names, check = state(db)
    assert (count, revoked, names, check) == (LINES, LINES // 10, earlier[2], "ok")
