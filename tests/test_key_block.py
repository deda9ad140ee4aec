"""BR 6.1.1.3: every keyCompromise revocation blocks the key, whichever path revoked it.

By serial (`revoke SERIAL`), as an upgrade of an earlier revocation (BR 7.2.2), in bulk
(`revoke --all`, `Revoker.revoke_many`); the block is written with the revocation and a CSR
with that key is refused afterwards. Other reasons block nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shirushi import config
from shirushi.asn1.keys import spki_sha256
from shirushi.backend import Backend
from shirushi.errors import PolicyError
from support.pki import cli_env, make_csr, make_key, run_cli, split_pem

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = cli_env(tmp_path / "data", SHIRUSHI_REDIS__URL=redis_url)
    result = run_cli(["init"], env)
    assert result.returncode == 0, result.stderr
    return env


def issue(env: dict[str, str], path: Path, csr: bytes) -> tuple[int, str]:
    path.write_bytes(csr)
    result = run_cli(["issue", "--csr", str(path)], env)
    if result.returncode != 0:
        return result.returncode, result.stderr
    return 0, format(split_pem(result.stdout)[0].serial_number, "X")


def blocked_keys(env: dict[str, str]) -> list[tuple[str, str]]:
    with sqlite3.connect(Path(env["SHIRUSHI_DATA_DIR"]) / "shirushi.db") as db:
        return [(r[0], r[1]) for r in db.execute("select spki_sha256, reason from blocked_keys")]


def test_revoke_by_serial_with_key_compromise_blocks_the_key(env: dict[str, str], tmp_path: Path) -> None:
    key = make_key()
    code, serial = issue(env, tmp_path / "a.pem", make_csr(["a.example.jp"], key=key))
    assert code == 0, serial
    result = run_cli(["revoke", serial, "--reason", "keyCompromise"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"revoked {serial} reason=keyCompromise at=")
    assert result.stdout.rstrip().endswith(" key=blocked"), result.stdout
    [(spki, reason)] = blocked_keys(env)
    assert spki == spki_sha256(key.public_key())
    assert reason == f"keyCompromise revocation of {serial.lower()}"
    code, err = issue(env, tmp_path / "b.pem", make_csr(["b.example.jp"], key=key))
    assert code == 3, err
    assert err.strip() == "shirushi: error: key refused: it was reported compromised and is blocked (BR 6.1.1.3)"
    # Another key is still certified.
    assert issue(env, tmp_path / "c.pem", make_csr(["c.example.jp"]))[0] == 0


def test_other_reasons_do_not_block_and_an_upgrade_does(env: dict[str, str], tmp_path: Path) -> None:
    key = make_key()
    _, serial = issue(env, tmp_path / "a.pem", make_csr(["a.example.jp"], key=key))
    result = run_cli(["revoke", serial, "--reason", "superseded"], env)
    assert result.returncode == 0, result.stderr
    assert "key=blocked" not in result.stdout
    assert blocked_keys(env) == []
    code, second = issue(env, tmp_path / "b.pem", make_csr(["b.example.jp"], key=key))
    assert code == 0, second
    # BR 7.2.2: key-compromise evidence later moves the revocation to keyCompromise; that blocks too.
    result = run_cli(["revoke", serial, "--reason", "keyCompromise"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(" key=blocked"), result.stdout
    assert len(blocked_keys(env)) == 1
    assert issue(env, tmp_path / "c.pem", make_csr(["c.example.jp"], key=key))[0] == 3


def test_bulk_key_compromise_blocks_every_key(env: dict[str, str], tmp_path: Path) -> None:
    keys = [make_key(), make_key()]
    for i, key in enumerate(keys):
        assert issue(env, tmp_path / f"{i}.pem", make_csr([f"h{i}.example.jp"], key=key))[0] == 0
    result = run_cli(["revoke", "--all", "--yes", "--reason", "keyCompromise"], env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("revoked ")]
    assert len(lines) == 2 and all(line.endswith(" key=blocked") for line in lines), result.stdout
    assert len(blocked_keys(env)) == 2
    for i, key in enumerate(keys):
        assert issue(env, tmp_path / f"again{i}.pem", make_csr([f"x{i}.example.jp"], key=key))[0] == 3


def test_revoke_many_in_process_blocks(env: dict[str, str]) -> None:
    backend = Backend(config.load(None, environ=env))
    try:
        key = make_key()
        issued = backend.authority.issue(make_csr(["m.example.jp"], key=key))
        results = backend.revoker.revoke_many([issued.record], "keyCompromise", requested_by="test")
        assert [r.key_blocked for r in results] == [True]
        assert backend.store.is_key_blocked(issued.record.spki_sha256)
        with pytest.raises(PolicyError, match="blocked"):
            backend.authority.issue(make_csr(["n.example.jp"], key=key))
        other = backend.authority.issue(make_csr(["o.example.jp"]))
        result = backend.revoker.revoke(other.certificate.serial_number, "cessationOfOperation")
        assert not result.key_blocked and not backend.store.is_key_blocked(other.record.spki_sha256)
    finally:
        backend.close()
