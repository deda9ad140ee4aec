"""The audit hash chain, retention with time as an argument, and export/verify in process over a
real SQLite store (no processes: the CLI and `serve` are in test_archive.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from shirushi import config
from shirushi.archive import chain
from shirushi.archive.export import export
from shirushi.archive.retention import Pruned, prune
from shirushi.archive.verify import verify
from shirushi.clock import years_before
from shirushi.config import Settings
from shirushi.store import CertificateRecord, Store, schema

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ISSUER = "c256c3c4f729ba10"


def row(i: int, detail: str = "{}") -> dict[str, object]:
    return chain.AuditRow(i, T + dt.timedelta(seconds=i), "issue", ISSUER, format(i, "x"), detail).fields()


def test_each_link_covers_every_row_before_it() -> None:
    rows = [row(i) for i in range(1, 6)]
    links = [link for _, link in chain.links(rows)]
    assert links[0] == chain.link(chain.GENESIS, rows[0]) and len(set(links)) == 5
    changed = [*rows[:2], row(3, '{"x": 1}'), *rows[3:]]
    again = [link for _, link in chain.links(changed)]
    assert again[:2] == links[:2] and all(a != b for a, b in zip(again[2:], links[2:], strict=True))
    dropped = [link for _, link in chain.links(rows[:2] + rows[3:])]
    assert dropped[2:] != links[3:]
    # A line round-trips to the same canonical bytes and link.
    fields, recorded = chain.parse_line(chain.line(rows[0], links[0]))
    assert chain.link(chain.GENESIS, fields) == recorded == links[0]
    with pytest.raises(ValueError):
        chain.parse_line(json.dumps({**rows[0], "chain": "00" * 32, "extra": 1}))


def test_cutoff_counts_calendar_years() -> None:
    assert years_before(dt.datetime(2033, 6, 1, tzinfo=dt.UTC), 7) == dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert years_before(dt.datetime(2032, 2, 29, tzinfo=dt.UTC), 7) == dt.datetime(2025, 2, 28, tzinfo=dt.UTC)


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return config.load(environ={"SHIRUSHI_DATA_DIR": str(tmp_path / "data"), **env})


def open_store(settings: Settings) -> Store:
    store = Store.open(settings.database_url)
    store.add_issuer(ISSUER, "issuing-ca", "CN=Issuing", b"\x30\x00", T - dt.timedelta(days=400))
    return store


def add(store: Store, serial: int, not_after: dt.datetime, kind: str = "server") -> CertificateRecord:
    record = CertificateRecord(
        issuer_id=ISSUER,
        serial=serial,
        der=b"\x30\x03\x02\x01" + bytes([serial]),
        subject=f"CN=s{serial}.example.jp",
        dns_names=(f"s{serial}.example.jp",),
        not_before=not_after - dt.timedelta(days=90),
        not_after=not_after,
        spki_sha256=f"{serial:064x}",
        kind=kind,
    )
    store.add_certificate(record, at=not_after - dt.timedelta(days=90), audit={"serial": serial}, presign=False)
    return record


def serials(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return {int(s, 16) for (s,) in conn.execute(sa.select(schema.certificates.c.serial))}


def audit_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.audit)).scalar_one())


def test_certificates_go_7_years_after_expiry_and_nothing_else(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = open_store(settings)
    add(store, 1, T)  # expired at T: goes
    add(store, 2, T + dt.timedelta(days=365))  # expired a year later: stays
    add(store, 3, T, kind="ca")  # a CA certificate: never pruned
    owed = add(store, 4, T)  # revoked, not yet shown on a CRL after expiry (RFC 5280 3.3): stays
    store.revoke(owed, reason="superseded", revoked_at=T - dt.timedelta(days=1), at=T, audit={})
    shown = add(store, 5, T)  # revoked and shown after expiry: goes
    store.revoke(shown, reason="superseded", revoked_at=T - dt.timedelta(days=1), at=T, audit={})
    number = store.crls.allocate_number(ISSUER, this_update=T, next_update=T + dt.timedelta(days=4), scheduled=True)
    store.crls.published(ISSUER, number, entries=1, sha256="00", at=T, shown_after_expiry=[5])
    forgotten: list[tuple[str, list[int]]] = []

    def forget(issuer: str, gone: list[int]) -> None:
        forgotten.append((issuer, gone))

    before = audit_count(store)
    seven_years = dt.datetime(2033, 1, 1, tzinfo=dt.UTC)
    assert prune(settings, store, seven_years - dt.timedelta(days=1), forget=forget) == Pruned()
    assert serials(store) == {1, 2, 3, 4, 5}
    assert prune(settings, store, seven_years + dt.timedelta(days=1), forget=forget).certificates == 2
    assert serials(store) == {2, 3, 4}
    assert forgotten == [(ISSUER, [1, 5])]
    # The audit log only grew: one record of what went, naming the serials.
    assert audit_count(store) == before + 1
    with store.engine.connect() as conn:
        (detail,) = conn.execute(
            sa.select(schema.audit.c.detail).where(schema.audit.c.action == "retention-prune")
        ).one()
    assert json.loads(detail)["serials"] == ["1", "5"] and json.loads(detail)["certificates"] == 2
    # Run again: nothing more to do, nothing more logged.
    assert prune(settings, store, seven_years + dt.timedelta(days=1)) == Pruned()
    assert audit_count(store) == before + 1
    store.close()


def test_retention_years_0_keeps_certificates_forever(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SHIRUSHI_ARCHIVE__RETENTION_YEARS="0")
    store = open_store(settings)
    add(store, 1, T)
    assert prune(settings, store, T + dt.timedelta(days=100 * 366)).certificates == 0
    assert serials(store) == {1}
    store.close()


def test_exports_before_and_after_a_prune_share_the_chain(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = open_store(settings)
    add(store, 1, T)
    add(store, 2, T + dt.timedelta(days=3000))
    first, second = tmp_path / "first", tmp_path / "second"
    export(settings, store, first, since=None, now=T)
    later = dt.datetime(2033, 6, 1, tzinfo=dt.UTC)
    assert prune(settings, store, later).certificates == 1
    export(settings, store, second, since=None, now=later)
    lines_one = (first / "audit.jsonl").read_text().splitlines()
    lines_two = (second / "audit.jsonl").read_text().splitlines()
    assert lines_two[: len(lines_one)] == lines_one
    assert [json.loads(line)["action"] for line in lines_two[len(lines_one) :]] == ["archive-export", "retention-prune"]
    assert [c["serial"] for c in map(json.loads, (second / "certificates.jsonl").read_text().splitlines())] == ["2"]
    for out in (first, second):
        summary, problems = verify(out, store)
        assert problems == [] and summary["audit"]["through_id"] > 0
    store.close()


def test_a_removed_database_row_is_found(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = open_store(settings)
    for i in range(1, 4):
        add(store, i, T)
    out = tmp_path / "export"
    export(settings, store, out, since=None, now=T)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER audit_no_delete"))
        conn.execute(schema.audit.delete().where(schema.audit.c.id == 2))
    _, problems = verify(out, store)
    assert problems and problems[0].startswith("audit row 3 in the database differs from the export")
    assert verify(out)[1] == []  # the files alone still verify
    store.close()


def test_export_and_verify_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The horizon's SHARE lock, the chain over timestamptz rows and a changed row, on PostgreSQL."""
    settings = settings_for(tmp_path, SHIRUSHI_DATABASE__URL=postgres_url)
    store = open_store(settings)
    for i in range(1, 4):
        add(store, i, T)
    first, second = tmp_path / "first", tmp_path / "second"
    export(settings, store, first, since=None, now=T)
    add(store, 4, T)
    export(settings, store, second, since=None, now=T)
    lines_one = (first / "audit.jsonl").read_text().splitlines()
    assert (second / "audit.jsonl").read_text().splitlines()[: len(lines_one)] == lines_one
    assert verify(second, store)[1] == []
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit DISABLE TRIGGER audit_append_only"))
        conn.execute(schema.audit.update().where(schema.audit.c.id == 2).values(detail="{}"))
    _, problems = verify(second, store)
    assert problems and problems[0].startswith("audit row 2 in the database differs from the export")
    store.close()


def test_an_outside_cas_revoked_certificate_is_not_held_for_our_crl(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = open_store(settings)
    outside = "0123456789abcdef"
    store.add_issuer(outside, "easyrsa", "CN=Outside", b"\x30\x00", T)
    with store.engine.begin() as conn:
        conn.execute(schema.issuers.update().where(schema.issuers.c.id == outside).values(outside=True))
    ours = add(store, 1, T)
    store.revoke(ours, reason="superseded", revoked_at=T, at=T, audit={})
    theirs = CertificateRecord(
        issuer_id=outside, serial=2, der=b"", subject="", dns_names=(), not_before=T, not_after=T, spki_sha256="2" * 64
    )
    store.add_certificate(theirs, at=T, audit={}, presign=False)
    store.revoke(theirs, reason="superseded", revoked_at=T, at=T, audit={})
    assert prune(settings, store, dt.datetime(2033, 6, 1, tzinfo=dt.UTC)).certificates == 1
    assert serials(store) == {1}  # ours still waits for a CRL to show it after expiry
    store.close()
