"""`shirushi show SERIAL` and `shirushi list` on a real data directory, checked against openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.pki import cli_env, make_csr, run_cli, split_pem


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = cli_env(tmp_path / "data", SHIRUSHI_REDIS__URL=redis_url)
    assert run_cli(["init"], env).returncode == 0
    return env


def issue(env: dict[str, str], tmp_path: Path, name: str, days: int) -> str:
    csr = tmp_path / f"{name}.csr"
    csr.write_bytes(make_csr([name]))
    result = run_cli(["issue", "--csr", str(csr), "--days", str(days)], env)
    assert result.returncode == 0, result.stderr
    pem = tmp_path / f"{name}.pem"
    pem.write_text(result.stdout)
    # The serial exactly as an operator copies it from openssl.
    out = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-serial"], capture_output=True, text=True)
    assert split_pem(result.stdout)
    return out.stdout.strip().removeprefix("serial=")


def fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_show_and_list(env: dict[str, str], tmp_path: Path) -> None:
    soon = issue(env, tmp_path, "soon.example.jp", 10)
    later = issue(env, tmp_path, "later.example.jp", 200)
    gone = issue(env, tmp_path, "gone.example.jp", 30)
    assert run_cli(["revoke", gone, "--reason", "superseded"], env).returncode == 0

    shown = run_cli(["show", soon], env)
    assert shown.returncode == 0, shown.stderr
    f = fields(shown.stdout)
    # openssl pads to whole octets ("0B73..."); Shirushi writes the number without leading zeros.
    assert (
        int(f["serial"], 16) == int(soon, 16)
        and f["serial"] == format(int(soon, 16), "X")
        and f["status"] == "good"
        and f["kind"] == "server"
    )
    assert f["dns_names"] == "soon.example.jp" and f["reason"] == "-" and f["issuer"].startswith("issuing-ca (")
    not_after = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "soon.example.jp.pem"), "-noout", "-enddate", "-dateopt", "iso_8601"],
        capture_output=True,
        text=True,
    ).stdout
    assert f["not_after"].replace("T", " ") in not_after, (f["not_after"], not_after)
    # Colons and lower case, as other tools print serials, name the same certificate.
    colons = ":".join(gone[i : i + 2] for i in range(0, len(gone), 2)).lower()
    f = fields(run_cli(["show", colons], env).stdout)
    assert f["status"] == "revoked" and f["reason"] == "superseded" and f["revoked_at"] != "-"

    listed = run_cli(["list"], env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["SERIAL", "STATUS", "NOT_AFTER", "KIND", "NAMES"]
    serials = [int(r.split()[0], 16) for r in rows]
    # Soonest expiry first; the OCSP signer (about a year) is listed too.
    assert serials.index(int(soon, 16)) < serials.index(int(gone, 16)) < serials.index(int(later, 16))
    assert any(r.split()[3] == "ocsp-signer" for r in rows)

    revoked = run_cli(["list", "--revoked"], env).stdout.splitlines()[1:]
    assert [(int(r.split()[0], 16), r.split()[1]) for r in revoked] == [(int(gone, 16), "revoked")]
    expiring = run_cli(["list", "--expiring", "60"], env).stdout.splitlines()[1:]
    assert [int(r.split()[0], 16) for r in expiring] == [int(soon, 16)]  # the revoked one is not "expiring"
    both = run_cli(["list", "--revoked", "--expiring", "60"], env)
    assert both.returncode == 0 and "(no certificate matches)" in both.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "1234ABCD"], 4, "no certificate with serial 1234ABCD"),
        (["show", "xyz"], 2, "is not hexadecimal"),
        (["show", "0"], 2, "out of range"),
        (["list", "--expiring", "soon"], 2, "not a whole number"),
        (["list", "--expiring", "-1"], 2, "between 0 and"),
    ],
)
def test_errors_are_one_line(env: dict[str, str], args: list[str], code: int, message: str) -> None:
    result = run_cli(args, env)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.mark.e2e
def test_not_initialised(tmp_path: Path) -> None:
    result = run_cli(["list"], cli_env(tmp_path / "empty"))
    assert result.returncode == 6 and "run `shirushi init`" in result.stderr
    assert not (tmp_path / "empty" / "shirushi.db").exists()
