"""The store side of outside-CA imports, on SQLite and PostgreSQL: one transaction, rows read back
as the rest of the store writes them, revocations with outbox and audit, CRL order kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shirushi.errors import ConflictError
from shirushi.store import Store, bulkload
from shirushi.store import outside as o

T0 = dt.datetime(2026, 11, 29, 9, 0, 5, 250000, tzinfo=dt.UTC)
ISSUER = "0a1b2c3d4e5f6071"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'shirushi.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    s = Store.open(url)
    o.add_issuer(s, ISSUER, "corp", "CN=Corp", b"der", T0)
    yield s
    s.close()


def test_import_round_trip_revocations_and_crl_order(store: Store) -> None:
    after = T0 + dt.timedelta(days=365)
    new = [o.Seen(0x10 + i, not_after=after, subject=f"/CN={i}") for i in range(3)]
    new.append(o.Seen(0x20, revoked_at=T0, reason="keyCompromise"))
    o.apply(store, ISSUER, o.Changes(new=new), T0, {"source": "test"}, crl=(5, T0))
    record = store.certificate(0x10, ISSUER)
    assert record is not None and record.not_after == after and record.kind == "outside"
    crl_only = store.certificate(0x20, ISSUER)
    assert crl_only is not None and crl_only.revoked_at == T0 and crl_only.not_after == o.UNKNOWN_NOT_AFTER
    assert o.known(store, ISSUER) == {0x10: o.Known(False, False), 0x11: o.Known(False, False),
                                      0x12: o.Known(False, False), 0x20: o.Known(True, False)}  # fmt: skip
    revoked = o.Seen(0x11, revoked_at=T0 + dt.timedelta(hours=1), reason="superseded")
    o.apply(store, ISSUER, o.Changes(revoke=[revoked]), T0, {}, crl=(6, T0 + dt.timedelta(hours=1)))
    assert {(w.serial, w.kind) for w in store.outbox.pending()} == {(0x20, "ocsp"), (0x11, "ocsp")}
    rows = store.statuses_of(ISSUER, [0x11])
    assert rows[0].status_version == 1 and rows[0].reason == "superseded"
    # An older CRL number, or an older thisUpdate without numbers: refused, nothing written.
    with pytest.raises(ConflictError, match="older"):
        o.apply(store, ISSUER, o.Changes(new=[o.Seen(0x30)]), T0, {}, crl=(4, T0 + dt.timedelta(hours=2)))
    with pytest.raises(ConflictError, match="older"):
        o.apply(store, ISSUER, o.Changes(new=[o.Seen(0x30)]), T0, {}, crl=(None, T0))
    assert store.certificate(0x30, ISSUER) is None
    assert [r.name for r in o.outside_issuers(store)] == ["corp"]


def index_names(store: Store) -> set[str]:
    return {str(i["name"]) for i in sa.inspect(store.engine).get_indexes("certificates")}


def test_bulk_first_import_rebuilds_indexes_and_keeps_earlier_rows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the rebuild threshold (lowered here) the secondary indexes are dropped and made again
    in the import's transaction (SQLite) or kept under COPY (PostgreSQL): the same indexes after,
    rows read back exactly, earlier rows untouched, later imports as usual."""
    before = index_names(store)
    assert {"ix_certificates_serial", "ix_certificates_owed", "ix_certificates_not_after"} <= before
    after = T0 + dt.timedelta(days=90)
    o.apply(store, ISSUER, o.Changes(new=[o.Seen(0x5, not_after=after, subject="/CN=early")]), T0, {})
    monkeypatch.setattr(bulkload, "REBUILD_ROWS", 100)
    new = [
        o.Seen(0x100 + i, after + dt.timedelta(seconds=i), f"/CN={i}", *((T0, "superseded") if i % 7 == 0 else ()))
        for i in range(500)
    ]
    o.apply(store, ISSUER, o.Changes(new=new), T0, {"source": "test"})
    assert index_names(store) == before
    known = o.known(store, ISSUER)
    assert len(known) == 501 and known[0x5] == o.Known(False, False)
    assert sum(k.revoked for k in known.values()) == len([i for i in range(500) if i % 7 == 0])
    record = store.certificate(0x100 + 13, ISSUER)
    assert record is not None and record.not_after == after + dt.timedelta(seconds=13) and record.subject == "/CN=13"
    revoked = store.certificate(0x100 + 14, ISSUER)
    assert revoked is not None and revoked.revoked_at == T0 and revoked.revocation_reason == "superseded"
    # Each revocation of the import has its outbox row and its audit entry.
    assert {w.serial for w in store.outbox.pending()} == {0x100 + i for i in range(500) if i % 7 == 0}
    with store.engine.connect() as conn:
        audited = conn.execute(sa.text("SELECT count(*) FROM audit WHERE action = 'revoke'")).scalar_one()
    assert audited == len([i for i in range(500) if i % 7 == 0])
    # A later import (below the threshold) revokes through the rebuilt indexes.
    o.apply(store, ISSUER, o.Changes(revoke=[o.Seen(0x101, revoked_at=T0, reason="keyCompromise")]), T0, {})
    assert store.statuses_of(ISSUER, [0x101])[0].status_version == 1
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
