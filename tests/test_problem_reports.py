"""Certificate problem reports (BR 4.9.3, 4.9.5): the open route on a running serve, its rate limit
and bounds, and `shirushi reports` to list and close them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from shirushi.reports import time_left
from shirushi.store.reports import ProblemReport
from shirushi.web.ratelimit import RateLimit
from support.http_api import call, is_error
from support.pki import make_csr, make_key
from support.serving import Site

TOKEN = "reports-test-token"
LIMIT = 5
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def report(**changes: Any) -> ProblemReport:
    values: dict[str, Any] = dict(
        id=1,
        received_at=T0,
        deadline=T0 + dt.timedelta(hours=24),
        issuer_id="i",
        serial=1,
        reason="r",
        contact="",
        detail="",
        client="127.0.0.1",
    )
    values.update(changes)
    return ProblemReport(**values)


def test_time_left() -> None:
    assert time_left(report(), T0) == "24h00m left"
    assert time_left(report(), T0 + dt.timedelta(hours=23, minutes=1)) == "0h59m left"
    assert time_left(report(), T0 + dt.timedelta(hours=25, minutes=3)) == "overdue 1h03m"
    assert time_left(report(closed_at=T0, action="rejected"), T0) == "closed"


def test_rate_limit_per_address() -> None:
    limit = RateLimit(3)
    assert [limit.allow("a", 10.0) for _ in range(3)] == [None, None, None]
    wait = limit.allow("a", 10.0)
    assert wait is not None and 1 <= wait <= 60
    assert limit.allow("b", 10.0) is None  # another address has its own allowance
    # A minute on, the old window's weight has fallen away.
    assert limit.allow("a", 130.0) is None


def test_rate_limit_memory_is_bounded() -> None:
    limit = RateLimit(1, max_clients=100)
    for i in range(1000):
        limit.allow(f"10.0.{i // 256}.{i % 256}", 5.0)
    assert len(limit._counts) <= 100


# -- against a running serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(
        tmp_path_factory.mktemp("reports"), SHIRUSHI_API__TOKEN=TOKEN, SHIRUSHI_API__OPEN_REQUESTS_PER_MINUTE=str(LIMIT)
    )
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def issue(site: Site) -> dict[str, str]:
    status, body, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token=TOKEN)
    assert status == 201, body
    return body


def send(site: Site, body: object, source: str, *, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    status, answer, _ = call(site, "POST", "/api/v1/problem-reports", body, raw=raw, source=source)
    return status, answer


def rows(site: Site, table: str, where: str = "", columns: str = "*") -> list[tuple[Any, ...]]:
    with sqlite3.connect(site.data / "shirushi.db") as db:
        return list(db.execute(f"select {columns} from {table} {where}"))


def parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@pytest.mark.e2e
def test_a_report_gets_an_id_and_a_24h_deadline_in_the_audit_record(site: Site) -> None:
    cert = issue(site)
    body = {"serial": cert["serial"], "reason": "keyCompromise", "contact": "a@example.jp", "detail": "key on pastebin"}
    status, answer = send(site, body, "127.0.0.2")
    assert status == 201, answer
    assert set(answer) == {"id", "received_at", "deadline"} and isinstance(answer["id"], int)
    assert parse(answer["deadline"]) - parse(answer["received_at"]) == dt.timedelta(hours=24)
    assert abs(parse(answer["received_at"]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    with sqlite3.connect(site.data / "shirushi.db") as db:
        entries = [
            (serial, json.loads(detail))
            for serial, detail in db.execute("select serial, detail from audit where action = 'problem-report'")
        ]
    mine = [d for serial, d in entries if d["report"] == answer["id"]]
    assert len(mine) == 1
    assert mine[0]["deadline"].startswith(answer["deadline"].removesuffix("Z"))
    assert mine[0]["reason"] == "keyCompromise" and mine[0]["contact"] == "a@example.jp"
    assert mine[0]["client"] == "127.0.0.2"
    # By certificate (PEM) instead of serial; contact and detail may be left out.
    status, answer = send(site, {"certificate": cert["certificate"], "reason": "misuse"}, "127.0.0.2")
    assert status == 201, answer


@pytest.mark.e2e
def test_malformed_or_foreign_reports_change_nothing(site: Site) -> None:
    cert = issue(site)
    before = len(rows(site, "problem_reports")), len(rows(site, "audit", "where action = 'problem-report'"))
    # A certificate with the same serial that this CA did not issue.
    key = make_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "impostor")])
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int(cert["serial"], 16))
        .not_valid_before(T0)
        .not_valid_after(T0 + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    cases: list[tuple[object, bytes | None, int]] = [
        ({"serial": cert["serial"]}, None, 400),  # no reason
        ({"serial": cert["serial"], "reason": ""}, None, 400),
        ({"serial": cert["serial"], "reason": 7}, None, 400),
        ({"reason": "no certificate named"}, None, 400),
        ({"serial": "xyz", "reason": "r"}, None, 400),
        ({"serial": cert["serial"], "reason": "r", "contact": 5}, None, 400),
        ({"serial": cert["serial"], "reason": "r" * 1001}, None, 400),
        ({"serial": cert["serial"], "reason": "r", "detail": "d" * 8001}, None, 400),
        ({"serial": cert["serial"], "reason": "r\x00"}, None, 400),
        ({"serial": cert["serial"], "reason": "r", "extra": "x"}, None, 400),
        ({"certificate": "not pem", "reason": "r"}, None, 400),
        ({"serial": "ABCDEF0123456789", "reason": "r"}, None, 404),
        ({"certificate": forged, "reason": "r"}, None, 422),
        (None, b"[1, 2]", 400),
        (None, b"{oops", 400),
        (None, b'{"reason": "' + b"x" * 40000 + b'"}', 400),
    ]
    for i, (body, raw, expected) in enumerate(cases):
        # Each from its own address: the rate limit is not what is tested here.
        status, err = send(site, body, f"127.0.1.{i + 1}", raw=raw)
        assert status == expected and is_error(err), (i, status, err)
    after = len(rows(site, "problem_reports")), len(rows(site, "audit", "where action = 'problem-report'"))
    assert after == before


@pytest.mark.e2e
def test_reports_are_rate_limited_per_client_address(site: Site) -> None:
    cert = issue(site)
    body = {"serial": cert["serial"], "reason": "flood"}
    statuses = [send(site, body, "127.0.2.1")[0] for _ in range(LIMIT)]
    assert statuses == [201] * LIMIT
    stored = len(rows(site, "problem_reports"))
    status, err, headers = call(site, "POST", "/api/v1/problem-reports", body, source="127.0.2.1")
    assert status == 429 and is_error(err) and err["error"] == "rate_limited", err
    assert 1 <= int(headers["retry-after"]) <= 60
    assert len(rows(site, "problem_reports")) == stored  # the refused one left nothing
    # Malformed requests count too (no free probing), and other addresses are not affected.
    assert send(site, {"serial": "zz"}, "127.0.2.1")[0] == 429
    assert send(site, body, "127.0.2.2")[0] == 201


@pytest.mark.e2e
def test_cli_lists_with_time_left_and_closes(site: Site) -> None:
    cert = issue(site)
    status, first = send(site, {"serial": cert["serial"], "reason": "misissued: wrong O"}, "127.0.3.1")
    assert status == 201
    status, second = send(site, {"serial": cert["serial"], "reason": "keyCompromise"}, "127.0.3.1")
    assert status == 201
    listed = site.cli("reports", "--open")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "RECEIVED", "DEADLINE", "LEFT"]
    mine = {int(line.split()[0]): line for line in lines if int(line.split()[0]) in (first["id"], second["id"])}
    assert len(mine) == 2
    assert "open" in mine[first["id"]] and ("23h5" in mine[first["id"]] or "24h00m left" in mine[first["id"]])
    assert cert["serial"] in mine[first["id"]] and "misissued: wrong O" in mine[first["id"]]
    # Rejected, with a note.
    closed = site.cli("reports", "close", str(first["id"]), "--action", "rejected", "--note", "O was verified")
    assert closed.returncode == 0, closed.stderr
    assert f"report {first['id']} closed: rejected" in closed.stdout
    again = site.cli("reports", "close", str(first["id"]), "--action", "rejected", "--note", "again")
    assert again.returncode == 5 and "closed already" in again.stderr
    # "revoked" only once the certificate is revoked.
    early = site.cli("reports", "close", str(second["id"]), "--action", "revoked", "--note", "confirmed")
    assert early.returncode == 3 and "not revoked" in early.stderr, early.stderr
    assert site.cli("revoke", cert["serial"], "--reason", "keyCompromise").returncode == 0
    done = site.cli("reports", "close", str(second["id"]), "--action", "revoked", "--note", "confirmed")
    assert done.returncode == 0, done.stderr
    # --open leaves them out now; the full list shows the actions.
    still_open = site.cli("reports", "--open").stdout
    assert not any(line.split()[0] in (str(first["id"]), str(second["id"])) for line in still_open.splitlines()[1:])
    everything = {line.split()[0]: line for line in site.cli("reports").stdout.splitlines()[1:]}
    assert "rejected" in everything[str(first["id"])] and "closed" in everything[str(first["id"])]
    assert "revoked" in everything[str(second["id"])]
    closes = [
        json.loads(d)
        for (d,) in rows(site, "audit", "where action = 'problem-report-close'", "detail")
        if json.loads(d)["report"] in (first["id"], second["id"])
    ]
    assert [(c["action"], c["note"], c["within_deadline"]) for c in closes] == [
        ("rejected", "O was verified", True),
        ("revoked", "confirmed", True),
    ]
    # Bad input: one line, its exit code, nothing changed.
    for args, code in (
        (("reports", "close", "999999", "--action", "rejected", "--note", "x"), 4),
        (("reports", "close", "abc", "--action", "rejected", "--note", "x"), 2),
        (("reports", "close", str(second["id"]), "--action", "ignored", "--note", "x"), 2),
        (("reports", "close", str(second["id"]), "--action", "rejected", "--note", " "), 2),
    ):
        result = site.cli(*args)
        assert result.returncode == code and "Traceback" not in result.stderr, (args, result.stderr)
