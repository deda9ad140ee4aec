"""The store on SQLite and on PostgreSQL: migrations, records, revocation, CRL numbers, audit."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shirushi.errors import ConflictError, ServiceError
from shirushi.store import CertificateRecord, Store
from shirushi.store.database import migrate, revision
from shirushi.store.revoked import RevokedReader
from support.store_rows import add_audit, audit_entries, count_certificates

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
ISSUER = "00112233aabbccdd"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'shirushi.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = Store.open(url)
    s.add_issuer(ISSUER, "issuing-ca", "CN=Test", b"der", T0)
    yield s
    s.close()


def record(serial: int, *, days: int = 200, spki: str = "ab" * 32) -> CertificateRecord:
    return CertificateRecord(
        issuer_id=ISSUER,
        serial=serial,
        der=b"\x30\x00" + serial.to_bytes(20, "big"),
        subject="CN=x",
        dns_names=("www.example.jp",),
        not_before=T0,
        not_after=T0 + dt.timedelta(days=days),
        spki_sha256=spki,
    )


def test_migrations_are_idempotent(store: Store) -> None:
    migrate(store.engine)
    migrate(store.engine)
    assert [r.name for r in store.issuers()] == ["issuing-ca"]


def test_certificate_round_trip_with_aware_times(store: Store) -> None:
    big = (1 << 158) + 12345
    store.add_certificate(record(big), at=T0, audit={"profile": "server"})
    got = store.certificate(big)
    assert got is not None
    assert got.serial == big and got.not_before == T0 and got.not_before.tzinfo is not None
    assert got.dns_names == ("www.example.jp",)
    assert store.certificate(big + 1) is None


def test_duplicate_serial_is_a_conflict_and_leaves_no_trace(store: Store) -> None:
    store.add_certificate(record(7), at=T0, audit={})
    with pytest.raises(ConflictError):
        store.add_certificate(record(7), at=T0, audit={})
    assert count_certificates(store, ISSUER) == 1
    assert len(audit_entries(store, "issue")) == 1
    assert len([w for w in store.outbox.pending() if w.kind == "ocsp"]) == 1


def test_revocation_is_one_transaction_with_outbox_and_audit(store: Store) -> None:
    store.add_certificate(record(9), at=T0, audit={})
    rec = store.certificate(9)
    assert rec is not None
    revoked = store.revoke(rec, reason="keyCompromise", revoked_at=T0, at=T0, audit={"reason": "keyCompromise"})
    assert revoked.revoked_at == T0
    kinds = sorted(w.kind for w in store.outbox.pending())
    assert kinds == ["crl", "ocsp", "ocsp"]  # issuance's OCSP work, then the revocation's two
    with pytest.raises(ConflictError, match="already revoked"):
        store.revoke(rec, reason="superseded", revoked_at=T0, at=T0, audit={})
    assert [(r.serial, r.reason) for r in RevokedReader(store.engine).entries(ISSUER)] == [(9, "keyCompromise")]
    assert [a["action"] for a in audit_entries(store)] == ["issue", "revoke"]


def test_statuses_are_paged_and_skip_expired(store: Store) -> None:
    for serial in range(1, 26):
        store.add_certificate(record(serial, days=1 if serial % 5 == 0 else 200), at=T0, audit={}, presign=False)
    batches = list(store.statuses(ISSUER, valid_at=T0 + dt.timedelta(days=2), batch=7))
    assert [len(b) for b in batches] == [7, 7, 6]
    assert sorted(s.serial for b in batches for s in b) == [s for s in range(1, 26) if s % 5]


def test_crl_numbers_strictly_increase_even_between_two_backends(store: Store) -> None:
    other = Store.open(str(store.engine.url.render_as_string(hide_password=False)))

    def allocate(s: Store) -> int:
        return s.crls.allocate_number(ISSUER, this_update=T0, next_update=T0 + dt.timedelta(hours=96), scheduled=False)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(allocate, [store, other] * 10))
    other.close()
    assert sorted(numbers) == list(range(1, 21))


def test_audit_log_is_append_only(store: Store) -> None:
    add_audit(store, T0, "test", {"a": 1})
    for statement in ("update audit set action = 'x'", "delete from audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [a["action"] for a in audit_entries(store)] == ["test"]


def test_revision_constant_is_alembics_head(store: Store) -> None:
    """`schema.REVISION` lets `migrate` skip Alembic; it must name the newest script."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from shirushi.store import schema

    migrations = Path(schema.__file__).parent / "migrations"
    config = Config(str(migrations / "alembic.ini"))
    config.set_main_option("script_location", str(migrations))
    assert ScriptDirectory.from_config(config).get_heads() == [schema.REVISION]
    assert revision(store.engine) == schema.REVISION


def test_migrate_runs_alembic_only_when_behind(store: Store) -> None:
    """A current schema is left alone; one behind (here: no version row) is brought up."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("delete from alembic_version"))
    assert revision(store.engine) is None
    with pytest.raises((sa.exc.DBAPIError, ServiceError)):
        migrate(store.engine)  # Alembic runs (and finds the tables there): proof it was not skipped
    from shirushi.store import schema

    with store.engine.begin() as conn:
        conn.execute(sa.text("insert into alembic_version (version_num) values (:v)"), {"v": schema.REVISION})
    migrate(store.engine)
    assert revision(store.engine) == schema.REVISION


def test_schema_matches_the_migrations(store: Store) -> None:
    """schema.py (used by queries) and the Alembic scripts (used to create) describe the same tables."""
    from shirushi.store import schema

    inspector = sa.inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes, table.name


def test_the_status_scan_reads_one_page_per_query(tmp_path: Path) -> None:
    """The presigner's full scan pages by ix_certificates_issuer: no pass over the whole issuer
    and no sort per page (quadratic in the certificates; the index of migration 0009)."""
    from shirushi.store.store import statuses_page

    s = Store.open(f"sqlite:///{tmp_path / 'shirushi.db'}")
    query = statuses_page(ISSUER, valid_at=T0, after=1000, batch=500)
    compiled = query.compile(s.engine, compile_kwargs={"literal_binds": True})
    with s.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    s.close()
    assert "ix_certificates_issuer (issuer_id=? AND id>?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_cli_on_postgresql(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    """init, issue, revoke and crl with database.url pointing at PostgreSQL: nothing goes to SQLite."""
    from support.pki import cli_env, make_csr, run_cli, split_pem

    env = cli_env(tmp_path / "data", SHIRUSHI_DATABASE__URL=postgres_url, SHIRUSHI_REDIS__URL=redis_url)
    assert run_cli(["init"], env).returncode == 0
    (tmp_path / "req.pem").write_bytes(make_csr())
    issued = run_cli(["issue", "--csr", str(tmp_path / "req.pem")], env)
    assert issued.returncode == 0, issued.stderr
    serial = format(split_pem(issued.stdout)[0].serial_number, "X")
    revoked = run_cli(["revoke", serial, "--reason", "superseded"], env)
    assert revoked.returncode == 0, revoked.stderr
    assert not (tmp_path / "data" / "shirushi.db").exists()
    s = Store.open(postgres_url)
    rec = s.certificate(int(serial, 16))
    s.close()
    assert rec is not None and rec.revocation_reason == "superseded"
