"""The CA use cases in-process with a frozen clock: validity across the BR schedule, linting,
encrypted key files, bulk revocation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from shirushi import config
from shirushi.backend import Backend
from shirushi.clock import FrozenClock
from shirushi.errors import LintError, SignerError
from support.pki import cli_env, make_csr, make_key, run_cli, split_pem
from support.store_rows import count_certificates

SECOND = dt.timedelta(seconds=1)


def backend_at(tmp_path: Path, at: dt.datetime, redis_url: str, **env: str) -> Backend:
    settings = config.load(
        None, environ={"SHIRUSHI_DATA_DIR": str(tmp_path / "data"), "SHIRUSHI_REDIS__URL": redis_url, **env}
    )
    return Backend(settings, FrozenClock(at))


@pytest.fixture
def backend(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    b = backend_at(tmp_path, dt.datetime(2027, 3, 14, 12, 0, tzinfo=dt.UTC), redis_url)
    b.init()
    yield b
    b.close()


def test_validity_across_the_2027_03_15_boundary(backend: Backend) -> None:
    """BR 6.3.2: 200 days for notBefore before 2027-03-15, 100 from then on (inclusive count)."""
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.set(dt.datetime(2027, 3, 14, 23, 59, 59, tzinfo=dt.UTC))
    before = backend.authority.issue(make_csr()).certificate
    clock.set(dt.datetime(2027, 3, 15, 0, 0, 0, tzinfo=dt.UTC))
    after = backend.authority.issue(make_csr()).certificate
    assert before.not_valid_after_utc - before.not_valid_before_utc + SECOND == dt.timedelta(days=200)
    assert after.not_valid_after_utc - after.not_valid_before_utc + SECOND == dt.timedelta(days=100)
    clock.set(dt.datetime(2029, 3, 15, tzinfo=dt.UTC))
    late = backend.authority.issue(make_csr(), days=90).certificate
    assert late.not_valid_after_utc - late.not_valid_before_utc + SECOND == dt.timedelta(days=47)


def test_lint_refuses_and_names_the_finding(tmp_path: Path, redis_url: str) -> None:
    """With the loopback allowance off, pkilint's ERROR about the 127.0.0.1 URLs refuses issuance."""
    b = backend_at(tmp_path, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), redis_url)
    b.init()
    strict = backend_at(
        tmp_path, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), redis_url, SHIRUSHI_CA__LINT_ALLOW_LOCAL_URLS="false"
    )
    before = count_certificates(strict.store, b.presigner.context().issuer_id)
    with pytest.raises(LintError, match=r"cabf\.internal_domain_name"):
        strict.authority.issue(make_csr())
    assert count_certificates(strict.store, b.presigner.context().issuer_id) == before
    b.close()
    strict.close()


def test_encrypted_key_files(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(
        tmp_path / "data",
        SHIRUSHI_CA__KEY_PASSPHRASE_ENV="CA_PASS",
        CA_PASS="correct horse",
        SHIRUSHI_REDIS__URL=redis_url,
    )
    assert run_cli(["init"], env).returncode == 0
    for key in (tmp_path / "data" / "keys").iterdir():
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    (tmp_path / "req.pem").write_bytes(make_csr())
    assert run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env).returncode == 0
    wrong = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], {**env, "CA_PASS": "wrong"})
    assert wrong.returncode == SignerError.exit_code
    assert "wrong passphrase" in wrong.stderr and "wrong" not in wrong.stderr.replace("wrong passphrase", "")
    unset = {k: v for k, v in env.items() if k != "CA_PASS"}
    missing = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], unset)
    assert missing.returncode == 2 and "CA_PASS is not set" in missing.stderr


def test_bulk_revocation_by_key_and_termination(tmp_path: Path, redis_url: str) -> None:
    env = cli_env(tmp_path / "data", SHIRUSHI_REDIS__URL=redis_url)
    assert run_cli(["init"], env).returncode == 0
    key = make_key()
    serials = []
    for dns in (["a.example.jp"], ["b.example.jp"]):
        (tmp_path / "req.pem").write_bytes(make_csr(dns, key=key))
        serials.append(split_pem(run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env).stdout)[0].serial_number)
    (tmp_path / "other.pem").write_bytes(make_csr(["c.example.jp"]))
    other = split_pem(run_cli(["issue", "--csr", str(tmp_path / "other.pem")], env).stdout)[0].serial_number
    result = run_cli(["revoke", "--key-of", str(tmp_path / "req.pem"), "--reason", "keyCompromise"], env)
    assert result.returncode == 0, result.stderr
    revoked = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("revoked ")]
    assert sorted(revoked) == sorted(format(s, "X") for s in serials)
    again = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env)
    assert again.returncode == 3 and "blocked" in again.stderr
    refused = run_cli(["revoke", "--all", "--reason", "cessationOfOperation"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = run_cli(["revoke", "--all", "--yes", "--reason", "cessationOfOperation"], env)
    assert done.returncode == 0, done.stderr
    assert format(other, "X") in done.stdout
    # The OCSP signer's own certificate is not a subscriber certificate: CA termination revokes
    # subscribers; the signer keeps answering for them.
    assert done.stdout.count("revoked ") == 1


@pytest.mark.e2e
def test_commands_on_an_empty_data_dir_create_nothing(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "nothing")
    result = run_cli(["revoke", "ABCDEF", "--reason", "superseded"], env)
    assert result.returncode == 6 and "run `shirushi init`" in result.stderr
    assert not (tmp_path / "nothing").exists()


@pytest.mark.e2e
def test_csr_from_an_endless_file_is_refused(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d")
    result = run_cli(["issue", "--csr", "/dev/zero"], env)
    assert result.returncode == 2
    assert result.stderr.strip() == "shirushi: error: CSR file /dev/zero is larger than 65536 bytes"


@pytest.mark.e2e
def test_revoke_with_redis_down_says_what_is_pending(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", SHIRUSHI_REDIS__URL=f"unix://{tmp_path}/none.sock", SHIRUSHI_REDIS__TIMEOUT="0.5")
    assert run_cli(["init"], env).returncode == 0
    (tmp_path / "req.pem").write_bytes(make_csr())
    issued = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env)
    assert issued.returncode == 8 and issued.stdout.count("BEGIN CERTIFICATE") == 2
    assert "issued, but OCSP response not yet in Redis" in issued.stderr
    serial = format(split_pem(issued.stdout)[0].serial_number, "X")
    revoked = run_cli(["revoke", serial, "--reason", "superseded"], env)
    assert revoked.returncode == 8
    assert revoked.stdout.startswith(f"revoked {serial}")
    assert "revoked, but OCSP response not yet in Redis" in revoked.stderr
    # Durable: the CRL part was done, and a second revocation is a conflict.
    assert run_cli(["revoke", serial, "--reason", "superseded"], env).returncode == 5
