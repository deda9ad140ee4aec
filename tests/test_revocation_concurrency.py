"""Revocations from two processes and many threads at once, and kill -9 in the middle of them.

Must hold (RFC 5280 5.2.3, 3.3; the revoke command's promise): no CRL number reused or skipped;
no CRL drops an entry an earlier CRL listed; after a crash and the restart's outbox drain, the
store, Redis and the published CRL agree on every revocation. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.x509 import ocsp

from shirushi import config
from shirushi.backend import Backend
from shirushi.cache import records
from shirushi.crl.shards import shard_of
from shirushi.store import CertificateRecord, schema

WORKER = Path(__file__).parent / "support" / "revoke_worker.py"


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    values = {
        "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
        "SHIRUSHI_REDIS__URL": redis_url,
        "SHIRUSHI_PRESIGN__WORKERS": "1",
    }
    if request.param == "postgresql":
        values["SHIRUSHI_DATABASE__URL"] = request.getfixturevalue("postgres_url")
    yield values


def backend_of(env: dict[str, str]) -> Backend:
    return Backend(config.load(None, environ=env))


def seed(env: dict[str, str], count: int, shards: int = 1) -> list[int]:
    """An initialised CA with `count` subscriber certificates (records only: revocation needs no DER)."""
    b = backend_of(env)
    b.init()
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    now = b.clock.now()
    serials = [int.from_bytes(os.urandom(16), "big") | 1 << 127 for _ in range(count)]
    for serial in serials:
        b.store.add_certificate(
            CertificateRecord(
                issuer_id=issuer.id,
                serial=serial,
                der=b"\x30\x00",
                subject="CN=test",
                dns_names=("test.example",),
                not_before=now - dt.timedelta(days=1),
                not_after=now + dt.timedelta(days=30),
                spki_sha256=format(serial, "064x")[-64:],
                crl_shard=shard_of(serial, shards),
            ),
            at=now,
            audit={},
        )
    assert b.drain_outbox() == []  # their OCSP responses
    b.close()
    return serials


def workers(env: dict[str, str], parts: list[list[int]], threads: int) -> list[subprocess.Popen[str]]:
    child_env = {**os.environ, **env}
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(threads), *(format(s, "x") for s in part)],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in parts
    ]


def archived(env: dict[str, str], shard: int = 0) -> dict[int, set[int]]:
    """CRL number -> serials listed, for every archived CRL of the issuing CA's `shard`."""
    b = backend_of(env)
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    out = {}
    for number in b.crls.archive.numbers(issuer.id, shard):
        crl = x509.load_der_x509_crl(b.crls.archive.load(issuer.id, shard, number))
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
        out[number] = {entry.serial_number for entry in crl}
    b.close()
    return out


def check_agreement(b: Backend, serials: list[int], shards: int = 1) -> set[int]:
    """Store, Redis and every shard's published CRL agree; return the revoked serials.

    Each revoked serial is listed on the CRL its certificate names and on no other."""
    revoked = {s for s in serials if (rec := b.store.certificate(s)) is not None and rec.revoked_at is not None}
    for shard in [0] if shards == 1 else range(1, shards + 1):
        crl = b.crls.current("issuing-ca", shard)
        assert crl is not None
        assert {entry.serial_number for entry in crl} == {s for s in revoked if shard_of(s, shards) == shard}, shard
    issuer = b.presigner.context().issuer_id
    client = redis.Redis.from_url(b.settings.redis_url)
    for serial in serials:
        raw = client.get(records.response_key(issuer, "sha1", serial))
        assert isinstance(raw, bytes), f"no OCSP response for {serial:x}"
        record = records.unpack(raw)
        assert record is not None
        response = ocsp.load_der_ocsp_response(record.der)
        expected = ocsp.OCSPCertStatus.REVOKED if serial in revoked else ocsp.OCSPCertStatus.GOOD
        assert response.certificate_status == expected, f"{serial:x}"
    client.close()
    assert b.store.outbox.pending() == []
    return revoked


def check_numbers(env: dict[str, str], b: Backend, *, crashed: bool, shard: int = 0) -> None:
    """The archived CRL numbers of `shard` are 1, 2, 3... with none reused or skipped, and no
    CRL drops an entry an earlier one listed. After a crash the last reserved number may have
    no CRL yet (its generation died before archiving; the next generation uses it)."""
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    crls = archived(env, shard)
    numbers = sorted(crls)
    k = schema.crls
    with b.store.engine.connect() as conn:
        rows = conn.execute(k.select().where(k.c.issuer_id == issuer.id, k.c.shard == shard).order_by(k.c.number)).all()
    published = [int(r.number) for r in rows if r.published_at is not None]
    reserved = [int(r.number) for r in rows]
    assert reserved == list(range(1, len(reserved) + 1))  # never reused: the table is unique per number
    assert numbers == list(range(1, len(numbers) + 1))  # never skipped
    if crashed:
        assert set(published) <= set(numbers) and len(reserved) - len(numbers) in (0, 1)
    else:
        assert published == numbers == reserved
    # RFC 5280 3.3: no CRL drops what an earlier one listed (nothing expires during the test).
    for earlier, later in itertools.pairwise(numbers):
        assert crls[earlier] <= crls[later], f"CRL {later} dropped entries of CRL {earlier}"


def test_two_processes_many_threads(env: dict[str, str]) -> None:
    serials = seed(env, 48)
    procs = workers(env, [serials[:24], serials[24:]], threads=12)
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.count("revoked ") == 24 and "pending" not in out
    b = backend_of(env)
    assert check_agreement(b, serials) == set(serials)
    check_numbers(env, b, crashed=False)
    # Group commit: 48 revocations cost far fewer than 48 CRLs.
    assert len(archived(env)) < 40
    b.close()


def test_two_processes_sharded_crls(env: dict[str, str]) -> None:
    """With crl.shards = 3: numbers per shard unique and consecutive, no shard drops an entry,
    and each revocation is listed on the shard its certificate names and on no other."""
    env = {**env, "SHIRUSHI_CRL__SHARDS": "3"}
    serials = seed(env, 36, shards=3)
    procs = workers(env, [serials[:18], serials[18:]], threads=9)
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.count("revoked ") == 18 and "pending" not in out
    b = backend_of(env)
    for shard in (1, 2, 3):
        check_numbers(env, b, crashed=False, shard=shard)
        crl = b.crls.current("issuing-ca", shard)
        assert crl is not None
        assert {e.serial_number for e in crl} == {s for s in serials if shard_of(s, 3) == shard}
    assert archived(env, 0) == {}  # no revocation touched the full CRL
    b.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_kill_during_group_commit_then_restart(env: dict[str, str], shards: int) -> None:
    """kill -9 of a process revoking from 16 threads (group commits in flight on every shard);
    the restart's outbox drain brings store, Redis and every shard's CRL into agreement."""
    env = {**env, "SHIRUSHI_CRL__SHARDS": str(shards)}
    serials = seed(env, 120, shards=shards)
    (proc,) = workers(env, [serials], threads=16)
    assert proc.stdout is not None
    done = 0
    deadline = time.monotonic() + 120
    while done < 10 and time.monotonic() < deadline:
        if proc.stdout.readline().startswith("revoked "):
            done += 1
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert done == 10  # killed mid-way, with revocations (and their CRLs) in flight
    b = backend_of(env)  # the restart: `serve` and `shirushi presign` drain the outbox first
    assert b.drain_outbox() == []
    revoked = check_agreement(b, serials, shards)
    assert 10 <= len(revoked) < len(serials)
    for shard in [0] if shards == 1 else range(1, shards + 1):
        check_numbers(env, b, crashed=True, shard=shard)
    b.close()
