"""The CRL archive: content-addressed pieces, byte-exact CRLs back, retention (policy 5.5)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from shirushi import config
from shirushi.backend import Backend
from shirushi.clock import FrozenClock, years_before
from shirushi.crl import Entry, build_crl
from shirushi.crl.archive_format import (
    CHUNK_ENTRIES,
    Archived,
    cut,
    join,
    manifest,
    prunable,
    read_manifest,
)
from shirushi.crl.service import crl_path
from shirushi.errors import InputError
from shirushi.store import schema
from shirushi.store.crl_archive import ArchiveConflictError
from shirushi.store.records import serial_column
from support.crl_pki import EPOCH, shared_pki

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def make_crl(number: int, serials: list[int], *, offset: int = 0) -> bytes:
    pki = shared_pki()
    this_update = EPOCH + dt.timedelta(seconds=number + offset)
    return build_crl(
        issuer=pki.issuing.cert,
        signer=pki.issuing.signer,
        number=number,
        this_update=this_update,
        next_update=this_update + dt.timedelta(hours=96),
        entries=[Entry(s, EPOCH, "superseded") for s in serials],
    )


def serials(count: int, seed: int = 1) -> list[int]:
    return [int.from_bytes(os.urandom(15), "big") | (seed << 125) for _ in range(count)]


@pytest.mark.parametrize("count", [0, 1, 3_000])
def test_cut_and_join_give_the_same_der(count: int) -> None:
    der = make_crl(7, serials(count))
    pieces = cut(der)
    assert len(pieces.frame) < 2_000  # everything but the entries
    m = read_manifest(manifest(pieces))
    assert join(m, pieces.chunks) == der
    if count == 3_000:
        # Content-defined boundaries: about one per CHUNK_ENTRIES entries.
        assert 3_000 // CHUNK_ENTRIES / 3 < len(pieces.chunks) < 3_000 // CHUNK_ENTRIES * 3
    tampered = [*pieces.chunks]
    if tampered:
        tampered[-1] = tampered[-1][:-1] + bytes([tampered[-1][-1] ^ 1])
        with pytest.raises(InputError, match="does not match"):
            join(m, tampered)


def test_one_new_entry_changes_few_chunks() -> None:
    listed = serials(5_000)
    before = cut(make_crl(1, listed))
    after = cut(make_crl(2, [*listed[:2_500], *serials(1, seed=2), *listed[2_500:]]))
    new = set(after.chunk_digests) - set(before.chunk_digests)
    assert 1 <= len(new) <= 2 and len(after.chunk_digests) >= 20
    # Re-signed unchanged: every chunk shared, only the frame differs.
    again = cut(make_crl(3, listed))
    assert again.chunk_digests == before.chunk_digests and again.sha256 != before.sha256


def test_not_a_crl_is_refused() -> None:
    for bad in (b"", b"\x30\x03\x02\x01\x01", b"\x30\x82\xff\xff"):
        with pytest.raises(InputError):
            cut(bad)
    with pytest.raises(InputError):
        read_manifest(b"{}")


def test_retention_rule() -> None:
    assert years_before(dt.datetime(2032, 2, 29, tzinfo=dt.UTC), 7) == dt.datetime(2025, 2, 28, tzinfo=dt.UTC)
    now = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    old = [Archived(n, dt.datetime(2030, 1, n, tzinfo=dt.UTC), f"{n}") for n in range(1, 6)]
    assert [c.number for c in prunable(old, now=now, years=7)] == [1, 2, 3, 4]  # never the newest
    recent = [*old, Archived(6, dt.datetime(2033, 1, 2, tzinfo=dt.UTC), "6")]
    assert [c.number for c in prunable(recent, now=now, years=7)] == [1, 2, 3, 4, 5]
    assert prunable(recent, now=now, years=10) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[tuple[Backend, FrozenClock]]:
    environ = {
        "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
        "SHIRUSHI_REDIS__URL": redis_url,
        "SHIRUSHI_PRESIGN__WORKERS": "1",
        "SHIRUSHI_CRL__SHARDS": "2",
    }
    if request.param == "postgresql":
        environ["SHIRUSHI_DATABASE__URL"] = request.getfixturevalue("postgres_url")
    clock = FrozenClock(T0)
    b = Backend(config.load(None, environ=environ), clock)
    b.init()
    yield b, clock
    b.close()


def revoke_records(b: Backend, count: int, shard: int) -> None:
    """Revoked certificates of `shard` straight in the store (CRL content is all that matters)."""
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    now = b.clock.now()
    rows = [
        {
            "issuer_id": issuer.id,
            "serial": serial_column(serial),
            "der": b"\x30\x00",
            "subject": "CN=test",
            "dns_names": "test.example",
            "not_before": now - DAY,
            "not_after": now + 30 * DAY,
            "spki_sha256": format(serial, "064x")[-64:],
            "kind": "server",
            "created_at": now,
            "revoked_at": now,
            "revocation_reason": "superseded",
            "crl_shown_after_expiry": False,
            "crl_shard": shard,
        }
        for serial in serials(count)
    ]
    with b.store.engine.begin() as conn:
        conn.execute(schema.certificates.insert(), rows)


def chunk_count(b: Backend) -> int:
    with b.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.crl_archive_chunks)).scalar_one())


def test_archive_keeps_every_crl_once_and_gives_it_back(backend: tuple[Backend, FrozenClock]) -> None:
    b, clock = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    revoke_records(b, 1_500, shard=1)
    published = b.crls.generate("issuing-ca", scheduled=True, shard=1)
    first = crl_path(b.settings, "issuing-ca", 1).read_bytes()
    chunks = chunk_count(b)
    # Cut points depend on the random serials: about 12 chunks for 1,500 entries, 4 or fewer
    # about once in 350 runs; more than one fails about once in 100,000.
    assert chunks >= 2
    clock.advance(DAY)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)  # unchanged shard, re-signed
    second = crl_path(b.settings, "issuing-ca", 1).read_bytes()
    assert chunk_count(b) == chunks  # no entry stored twice
    rows = b.crls.archive.index.rows(issuer.id, 1)
    assert [r.number for r in rows] == [published.number, published.number + 1]
    assert rows[1].stored < 3_000 < rows[1].size  # the new CRL cost its manifest only
    assert rows[0].size == len(first) and rows[1].size == len(second)
    assert b.crls.archive.load(issuer.id, 1, rows[0].number) == first
    assert b.crls.archive.load(issuer.id, 1, rows[1].number) == second
    # Same CRL again: a retry; another CRL under an archived number: refused.
    again = b.crls.archive.put(issuer.id, 1, second, number=rows[1].number, this_update=T0, next_update=T0 + DAY, at=T0)
    assert again.again and again.stored == 0
    with pytest.raises(ArchiveConflictError):
        b.crls.archive.put(issuer.id, 1, first, number=rows[1].number, this_update=T0, next_update=T0, at=T0)
    with pytest.raises(InputError, match="not in the archive"):
        b.crls.archive.load(issuer.id, 2, 99)


def test_retention_prunes_old_crls_and_unused_chunks_never_the_newest(backend: tuple[Backend, FrozenClock]) -> None:
    b, clock = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    revoke_records(b, 600, shard=1)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)
    b.crls.generate("issuing-ca", scheduled=True, shard=2)
    clock.advance(DAY)
    revoke_records(b, 600, shard=1)  # new chunks; the old ones stay in use too
    b.crls.generate("issuing-ca", scheduled=True, shard=1)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)
    before = {s: b.crls.archive.numbers(issuer.id, s) for s in (1, 2)}
    assert len(before[1]) == 3 and len(before[2]) == 1
    # Inside the retention period nothing goes.
    clock.advance(365 * 7 * DAY - 30 * DAY)
    assert all(p.crls == 0 and p.chunks == 0 for p in b.crls.prune_archive("issuing-ca"))
    assert {s: b.crls.archive.numbers(issuer.id, s) for s in (1, 2)} == before
    # Eight years on: every CRL past the cutoff goes, but each shard keeps its newest,
    # and the chunks that one uses.
    clock.advance(365 * DAY)
    newest = {s: crl_path(b.settings, "issuing-ca", s).read_bytes() for s in (1, 2)}
    pruned = b.crls.prune_archive("issuing-ca")
    assert sum(p.crls for p in pruned) == 2
    assert {s: b.crls.archive.numbers(issuer.id, s) for s in (1, 2)} == {1: before[1][-1:], 2: before[2]}
    for s in (1, 2):
        der = b.crls.archive.load(issuer.id, s, b.crls.archive.numbers(issuer.id, s)[0])
        assert der == newest[s]
        assert len(x509.load_der_x509_crl(der)) == (1_200 if s == 1 else 0)
    # What is left is exactly what the newest CRLs use (the first CRL's last chunk, cut short
    # where the later entries were appended, was used by the pruned CRL alone).
    assert chunk_count(b) == len(set(cut(newest[1]).chunk_digests)) and sum(p.chunks for p in pruned) <= 2
    # The same step again: nothing more to do (a pure function of now).
    assert all(p.crls == 0 and p.chunks == 0 for p in b.crls.prune_archive("issuing-ca"))


def test_chunks_only_old_crls_used_are_pruned(backend: tuple[Backend, FrozenClock]) -> None:
    b, clock = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    revoke_records(b, 600, shard=1)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)
    with b.store.engine.begin() as conn:  # every entry of shard 1 expires and leaves
        conn.execute(
            schema.certificates.update().where(schema.certificates.c.crl_shard == 1).values(crl_shown_after_expiry=True)
        )
    clock.advance(DAY)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)  # empty now
    assert chunk_count(b) > 0
    clock.advance(365 * 8 * DAY)
    b.crls.generate("issuing-ca", scheduled=True, shard=1)
    pruned = b.crls.prune_archive("issuing-ca")
    assert pruned[1].crls == 2 and pruned[1].chunks > 0 and pruned[1].chunk_octets > 0
    assert chunk_count(b) == 0
    number = b.crls.archive.numbers(issuer.id, 1)
    assert len(number) == 1
    assert b.crls.archive.load(issuer.id, 1, number[0]) == crl_path(b.settings, "issuing-ca", 1).read_bytes()


def test_crls_archived_as_files_are_moved_in(backend: tuple[Backend, FrozenClock]) -> None:
    """Earlier versions kept `archive/crl/NAME/NUMBER.crl`: the first CRL of the scope moves them
    into the archive, byte for byte, and removes the files."""
    b, _ = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    legacy = b.settings.layout.crl_archive("issuing-ca-2")
    legacy.mkdir(parents=True)
    files = {n: make_crl(n, serials(50)) for n in (1, 2)}
    for number, der in files.items():
        (legacy / f"{number}.crl").write_bytes(der)
        (legacy / f"{number}.crl").chmod(0o444)
    with b.store.engine.begin() as conn:  # their numbers, as the crls table of that version has them
        for number in files:
            conn.execute(
                schema.crls.insert().values(
                    issuer_id=issuer.id, shard=2, number=number, this_update=T0, scheduled=True, published_at=T0
                )
            )
    published = b.crls.generate("issuing-ca", scheduled=True, shard=2)
    assert published.number == 3
    assert list(legacy.glob("*.crl")) == []
    assert b.crls.archive.numbers(issuer.id, 2) == [1, 2, 3]
    for number, der in files.items():
        assert b.crls.archive.load(issuer.id, 2, number) == der


def test_serves_crl_schedule_enforces_retention(backend: tuple[Backend, FrozenClock]) -> None:
    """`serve`'s CRL job makes the CRLs that are due, then prunes what retention allows."""
    from shirushi.schedules import Scheduler

    b, clock = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    revoke_records(b, 300, shard=1)
    for _ in range(2):
        b.crls.generate("issuing-ca", scheduled=True, shard=1)
        clock.advance(DAY)
    clock.advance(365 * 8 * DAY)
    Scheduler(b).crl_job()
    (number,) = b.crls.archive.numbers(issuer.id, 1)
    assert number == 3  # the CRL the job made; both older ones are past retention
    assert len(x509.load_der_x509_crl(b.crls.archive.load(issuer.id, 1, number))) == 300


def test_a_number_reserved_by_a_dead_generation_is_used_not_skipped(backend: tuple[Backend, FrozenClock]) -> None:
    """A generation that died after numbering but before archiving published nothing with its
    number (the archive comes first): the next CRL of the shard takes it, so none is skipped."""
    b, _ = backend
    issuer = b.store.issuer("issuing-ca")
    assert issuer is not None
    first = b.crls.generate("issuing-ca", scheduled=True, shard=1).number
    now = b.clock.now()
    dead = b.store.crls.allocate_number(issuer.id, this_update=now, next_update=now + DAY, scheduled=False, shard=1)
    assert dead == first + 1
    assert b.crls.generate("issuing-ca", scheduled=True, shard=1).number == dead
    assert b.crls.archive.numbers(issuer.id, 1) == [first, dead]
    # Archived but not recorded as published (died between the two): that number is taken.
    b.crls.archive.put(issuer.id, 2, make_crl(1, []), number=1, this_update=now, next_update=now + DAY, at=now)
    with b.store.engine.begin() as conn:
        conn.execute(
            schema.crls.insert().values(issuer_id=issuer.id, shard=2, number=1, this_update=now, scheduled=True)
        )
    assert b.crls.generate("issuing-ca", scheduled=True, shard=2).number == 2
