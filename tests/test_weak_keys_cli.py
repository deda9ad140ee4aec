"""`shirushi issue` refuses a weak key in one line with exit 3 (BR 6.1.1.3), and issues nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from support.pki import cli_env, make_csr, run_cli
from support.weak_keys import fermat_close_key

pytestmark = pytest.mark.e2e


def test_cli_refuses_fermat_close_key(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path / "data", SHIRUSHI_REDIS__URL=redis_url)
    assert run_cli(["init"], env).returncode == 0
    csr = tmp_path / "weak.csr"
    csr.write_bytes(make_csr(key=fermat_close_key()))
    result = run_cli(["issue", "--csr", str(csr)], env)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shirushi: error: key refused: weak key (fermat): "), lines
    with sqlite3.connect(tmp_path / "data" / "shirushi.db") as db:
        assert db.execute("select count(*) from certificates where kind = 'server'").fetchone() == (0,)
