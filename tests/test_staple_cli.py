"""`shirushi staple` failure handling without a responder: one line, and `--every` keeps going."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.pki import cli_env, make_csr, run_cli

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


def test_leaf_only_issuer_from_the_local_ca_else_the_aia_url(tmp_path: Path) -> None:
    """With the CA's configuration the issuer comes from its data_dir, without the network;
    without it, from the caIssuers URL (here unreachable, so each run stops at a different step)."""
    env = cli_env(
        tmp_path / "d",
        SHIRUSHI_OCSP__URL="http://127.0.0.1:1/",
        SHIRUSHI_REPOSITORY__URL="http://127.0.0.1:1/",
        SHIRUSHI_CA__CPS_URI="http://127.0.0.1:1/cps",
    )
    assert run_cli(["init"], env).returncode == 0
    (tmp_path / "req.pem").write_bytes(make_csr())
    issued = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env)  # no Redis: exit 8, but issued
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(issued.stdout.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    out = tmp_path / "o.der"

    local = run_cli(["staple", "--cert", str(leaf), "--out", str(out)], env)
    assert local.returncode == 8
    assert local.stderr.splitlines() == [
        "shirushi: error: OCSP responder http://127.0.0.1:1/ unreachable: "
        "<urlopen error [Errno 111] Connection refused>"
    ]

    elsewhere = cli_env(tmp_path / "empty")
    remote = run_cli(["staple", "--cert", str(leaf), "--out", str(out)], elsewhere, cwd=tmp_path)
    assert remote.returncode == 8
    assert remote.stderr.splitlines() == [
        "shirushi: error: caIssuers URL http://127.0.0.1:1/issuing-ca.crt unreachable: [Errno 111] Connection refused"
    ]
    assert not out.exists()

    # A wrong --issuer is named, not used.
    wrong = run_cli(["staple", "--cert", str(leaf), "--issuer", str(leaf), "--out", str(out)], env)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == f"shirushi: error: {leaf} did not issue {leaf} (subject or signature does not match)"
