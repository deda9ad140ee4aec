"""`shirushi demo`, as the README's quick start runs it: the printed checks work when pasted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import Site

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]


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
        assert len(commands) == 9, commands
        verify, ocsp, reqout, curl_get, respin, curl_crl, show_crl, revoke, ocsp_again = commands
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
