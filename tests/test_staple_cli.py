"""`shirushi staple` failure handling without a responder: one line, and `--every` keeps going."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pki import cli_env, run_cli

pytestmark = pytest.mark.e2e


def test_unreachable_responder_is_one_line(tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_text("not a certificate")
    result = run_cli(["staple", "--cert", str(chain), "--out", str(tmp_path / "o.der")], cli_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"shirushi: error: {chain} holds no PEM or DER certificate"]


def test_every_survives_failures(tmp_path: Path) -> None:
    """A refresh loop must outlive a responder outage instead of exiting at the first error."""
    ca = subprocess.run(
        [sys.executable, "-m", "shirushi", "init"], env=cli_env(tmp_path / "d"), capture_output=True, text=True
    )
    assert ca.returncode == 0
    chain = tmp_path / "chain.pem"
    chain.write_bytes(
        (tmp_path / "d" / "certs" / "ocsp-signer.pem").read_bytes()
        + (tmp_path / "d" / "certs" / "issuing-ca.pem").read_bytes()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shirushi",
            "staple",
            "--cert",
            str(chain),
            "--out",
            str(tmp_path / "o.der"),
            "--every",
            "1h",
            "--url",
            "http://127.0.0.1:1/",
        ],
        env=cli_env(tmp_path / "d"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "error: OCSP responder http://127.0.0.1:1/ unreachable" in out
    assert "next refresh in 300 s" in out
