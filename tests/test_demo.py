"""`shirushi demo`, as the README's quick start runs it: the printed checks work when pasted."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.serving import Site

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]


def csv_rows(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_prints_checks_that_pass(tmp_path: Path) -> None:
    site = Site(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shirushi", "demo"],
        env=site.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Serving; press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Serving; press Ctrl-C" in output, output
        commands = [line.strip() for line in lines if line.startswith("  ") and not line.strip().startswith("#")]
        assert len(commands) == 12, commands
        verify, ocsp, reqout, curl_get, respin, curl_crl, show_crl, revoke, ocsp_again, ready, scrape, locust = commands
        assert ocsp == ocsp_again
        # Pasted into a plain shell elsewhere: no SHIRUSHI_* variables, another directory.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}

        def shell(command: str) -> str:
            done = subprocess.run(
                command, shell=True, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
            )
            return done.stdout + done.stderr

        assert ": OK" in shell(verify)
        good = shell(ocsp)
        assert "Response verify OK" in good and ": good" in good
        assert "Cert Status: good" in shell(f"{reqout} && {curl_get} && {respin}")
        assert "Certificate Revocation List" in shell(f"{curl_crl} && {show_crl}")
        assert "revoked" in shell(revoke)
        assert ": revoked" in shell(ocsp)
        assert '"ready": true' in shell(ready)
        deadline = time.monotonic() + 10  # responders add their counts four times a second
        while 'cert_status="revoked"' not in (scraped := shell(scrape)):
            assert time.monotonic() < deadline, scraped
            time.sleep(0.2)
        # The load test as printed (20 s, headless); locust exits 1 on any failed request.
        stats = tmp_path / "locust"
        run = subprocess.run(
            f"{locust} --csv {stats} --only-summary",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr
        total = next(row for row in csv_rows(stats) if row["Name"] == "Aggregated")
        assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
    assert site.processes() == ""


def test_demo_is_idempotent(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "shirushi", "demo", "--no-serve"],
            env=site.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Issued a sample certificate for www.example.jp" in result.stdout
    assert len(list((site.data / "keys").iterdir())) == 3


def test_second_demo_on_the_same_data_refuses_before_touching_anything(tmp_path: Path) -> None:
    site = Site(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "shirushi", "demo"],
        env=site.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert first.stdout is not None
        seen = ""
        deadline = time.monotonic() + 180
        while "Serving; press Ctrl-C" not in seen and time.monotonic() < deadline:
            line = first.stdout.readline()
            if not line:
                break
            seen += line
        assert "Serving; press Ctrl-C" in seen, seen
        demo_dir = site.data / "demo"
        before = {p.name: p.read_bytes() for p in demo_dir.iterdir()}
        for args in (["demo"], ["demo", "--no-serve"]):
            second = subprocess.run(
                [sys.executable, "-m", "shirushi", *args], env=site.env, capture_output=True, text=True, timeout=120
            )
            assert second.returncode == 6, second.stdout + second.stderr
            assert second.stdout == ""
            assert second.stderr.count("\n") == 1 and "is running on" in second.stderr, second.stderr
            assert {p.name: p.read_bytes() for p in demo_dir.iterdir()} == before
        # The first demo is unharmed: it still answers for its own sample.
        ocsp = subprocess.run(
            [
                "openssl", "ocsp", "-issuer", str(demo_dir / "issuing-ca.pem"), "-cert", str(demo_dir / "sample.pem"),
                "-url", site.ocsp_url, "-CAfile", str(demo_dir / "root.pem"), "-no_nonce",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert "Response verify OK" in ocsp.stdout + ocsp.stderr and ": good" in ocsp.stdout, ocsp.stdout + ocsp.stderr
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=60)
        if first.stdout is not None:
            first.stdout.close()
    assert first.returncode == 0
    assert site.processes() == ""
