"""Records export (policy 5.5): `shirushi archive export` from a running serve's records, checked by
`sha256sum -c` (coreutils) and `shirushi archive verify`; tampering with an exported line or a
database row is found; bad input is one line and leaves nothing; `serve`'s retention schedule."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import http.client
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.http_api import call
from support.pki import make_csr
from support.seed import PLACEHOLDER_DER
from support.serving import Site

pytestmark = pytest.mark.e2e

TOKEN = "archive-test-token"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("archive")
    (root / "logs").mkdir()
    s = Site(
        root,
        SHIRUSHI_API__TOKEN=TOKEN,
        SHIRUSHI_OCSP__ACCESS_LOG=str(root / "logs" / "ocsp-access.log"),
        SHIRUSHI_ARCHIVE__RETENTION_INTERVAL="1s",
    )
    assert s.cli("init").returncode == 0
    with s.serving():
        issued = [issue(s) for _ in range(2)]
        status, body, _ = call(
            s, "POST", f"/api/v1/certificates/{issued[0]['serial']}/revoke", {"reason": "superseded"}, token=TOKEN
        )
        assert status == 200, body
        report = {"serial": issued[1]["serial"], "reason": "keyCompromise", "contact": "a@example.jp", "detail": "x"}
        status, body, _ = call(s, "POST", "/api/v1/problem-reports", report)
        assert status == 201, body
        ocsp_request(s)
        yield s


def issue(site: Site) -> dict[str, str]:
    status, body, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token=TOKEN)
    assert status == 201, body
    return body


def ocsp_request(site: Site) -> None:
    """One (malformed) OCSP request, which the access log records; wait for its line."""
    conn = http.client.HTTPConnection("127.0.0.1", site.ocsp_port, timeout=30)
    try:
        conn.request("POST", "/", body=b"not an OCSP request", headers={"Content-Type": "application/ocsp-request"})
        conn.getresponse().read()
    finally:
        conn.close()
    log = site.root / "logs" / "ocsp-access.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text().strip()):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.1)


def export(site: Site, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "shirushi", "archive", "export", "--out", str(out), *extra]
    return subprocess.run(args, env=env or site.env, capture_output=True, text=True, timeout=120)


def sha256sum_ok(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sha256sum", "-c", "--strict", "--quiet", "MANIFEST.sha256"], cwd=directory, capture_output=True, text=True
    )


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("shirushi: error: "), result.stderr
    return lines[0]


def test_export_holds_the_records_and_verifies(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export(site, out)
    assert result.returncode == 0, result.stderr
    assert sha256sum_ok(out).returncode == 0
    verified = site.cli("archive", "verify", str(out), "--database")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK and the database" in verified.stdout

    summary = json.loads((out / "export.json").read_text())
    certs = jsonl(out / "certificates.jsonl")
    servers = [c for c in certs if c["kind"] == "server"]
    assert len(servers) == 2 and summary["counts"]["certificates"] == len(certs)
    for cert in certs:  # every certificate as DER and PEM that openssl reads
        der = out / cert["der"]
        shown = subprocess.run(
            ["openssl", "x509", "-inform", "DER", "-in", str(der), "-noout", "-serial"], capture_output=True, text=True
        )
        assert shown.returncode == 0 and shown.stdout.strip().endswith(cert["serial"][-8:]), shown
        pem = subprocess.run(
            ["openssl", "x509", "-in", str(der.with_suffix(".pem")), "-outform", "DER"], capture_output=True
        )
        assert pem.returncode == 0 and pem.stdout == der.read_bytes()
    revoked = jsonl(out / "revocations.jsonl")
    assert [r["reason"] for r in revoked] == ["superseded"]
    # Every archived CRL is there, readable by openssl, and matches its record.
    crls = jsonl(out / "crls.jsonl")
    assert len(crls) >= 2 and all(record["file"] for record in crls), crls  # from the store's CRL archive
    for record in crls:
        assert hashlib.sha256((out / record["file"]).read_bytes()).hexdigest() == record["sha256"]
        text = subprocess.run(
            ["openssl", "crl", "-inform", "DER", "-in", str(out / record["file"]), "-noout", "-crlnumber"],
            capture_output=True,
            text=True,
        )
        assert text.returncode == 0 and int(text.stdout.strip().removeprefix("crlNumber=0x"), 16) == record["number"]
    # The audit records include the problem report and the revocation, in id order.
    audit = jsonl(out / "audit.jsonl")
    actions = [a["action"] for a in audit]
    assert {"issue", "revoke", "problem-report", "crl"} <= set(actions)
    assert [a["id"] for a in audit] == sorted(a["id"] for a in audit)
    assert audit[-1]["chain"] == summary["audit"]["head"]
    reports = jsonl(out / "problem-reports.jsonl")
    assert len(reports) == 1 and reports[0]["reason"] == "keyCompromise"
    # The OCSP access log, with the request made above.
    access = (out / "ocsp-access" / "ocsp-access.log").read_text().splitlines()
    assert access and all(len(line.split("\t")) == 8 for line in access)
    assert summary["counts"]["ocsp_access_lines"] == len(access)


def test_a_later_export_extends_the_same_chain_and_since_verifies_alone(site: Site, tmp_path: Path) -> None:
    first, second, recent = tmp_path / "first", tmp_path / "second", tmp_path / "recent"
    assert export(site, first).returncode == 0
    issue(site)
    assert export(site, second).returncode == 0
    one, two = (out / "audit.jsonl" for out in (first, second))
    lines_one, lines_two = one.read_text().splitlines(), two.read_text().splitlines()
    assert len(lines_two) > len(lines_one) and lines_two[: len(lines_one)] == lines_one
    # The first export logged its head: the second has that audit record.
    logged = [a for a in jsonl(two) if a["action"] == "archive-export"]
    head = json.loads((first / "export.json").read_text())["audit"]["head"]
    assert head in [json.loads(a["detail"])["head"] for a in logged]
    # --since: only the recent part, verifiable on its own from the recorded chain start.
    time.sleep(1.1)  # whole seconds: everything above is before `since`
    since = dt.datetime.now(dt.UTC)
    issue(site)
    result = export(site, recent, "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((recent / "export.json").read_text())
    latest = tmp_path / "latest"
    assert export(site, latest).returncode == 0
    full = {a["id"]: a["chain"] for a in jsonl(latest / "audit.jsonl")}
    part = jsonl(recent / "audit.jsonl")
    assert part and part[0]["id"] > 1 and summary["audit"]["chain_start"] == full[part[0]["id"] - 1]
    assert all(full[a["id"]] == a["chain"] for a in part)
    assert [c["kind"] for c in jsonl(recent / "certificates.jsonl")] == ["server"]
    assert sha256sum_ok(recent).returncode == 0
    assert site.cli("archive", "verify", str(recent), "--database").returncode == 0


def test_a_changed_audit_line_is_found(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert export(site, out).returncode == 0
    audit = out / "audit.jsonl"
    lines = audit.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["detail"] = entry["detail"].replace("}", ', "forged": true}', 1)
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    audit.write_text("\n".join(lines) + "\n")
    # The plain edit: coreutils and verify both see it.
    assert sha256sum_ok(out).returncode != 0
    result = site.cli("archive", "verify", str(out))
    assert result.returncode == 9 and "audit.jsonl: SHA-256 differs from the manifest" in result.stdout
    # A tamperer who also fixes the manifest still breaks the chain.
    manifest = out / "MANIFEST.sha256"
    digest = subprocess.run(["sha256sum", "audit.jsonl"], cwd=out, capture_output=True, text=True).stdout.split()[0]
    manifest.write_text(
        "".join(
            f"{digest}  audit.jsonl\n" if line.endswith("  audit.jsonl") else line + "\n"
            for line in manifest.read_text().splitlines()
        )
    )
    assert sha256sum_ok(out).returncode == 0
    result = site.cli("archive", "verify", str(out))
    assert result.returncode == 9, result.stdout
    assert f"audit.jsonl line 3 (audit id {entry['id']}): chain link does not follow" in result.stdout
    assert one_error_line(result).startswith(f"shirushi: error: {out} does not verify: ")


def test_a_changed_database_row_is_found(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert export(site, out).returncode == 0
    # A copy of the database, changed past its append-only triggers (as someone with file access could).
    copy = tmp_path / "tampered.db"
    with sqlite3.connect(site.data / "shirushi.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:
        db.execute("drop trigger audit_no_update")
        (rid,) = db.execute("select min(id) from audit where action = 'revoke'").fetchone()
        db.execute("update audit set detail = '{}' where id = ?", (rid,))
    env = {**site.env, "SHIRUSHI_DATABASE__URL": f"sqlite:///{copy}"}
    result = subprocess.run(
        [sys.executable, "-m", "shirushi", "archive", "verify", str(out), "--database"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 9, result.stdout + result.stderr
    assert f"audit row {rid} in the database differs from the export" in result.stdout
    # The files alone still verify: the change is in the database.
    assert site.cli("archive", "verify", str(out)).returncode == 0


def test_bad_input_is_one_line_and_leaves_nothing(site: Site, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    line = one_error_line(export(site, busy))
    assert "is not empty" in line and sorted(p.name for p in busy.iterdir()) == ["mine.txt"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot be created" in one_error_line(export(site, blocker / "sub"))
    fresh = tmp_path / "fresh"
    for since in ("yesterday", "2026-13-01", "2026-01-01T00:00:00", "2999-01-01"):
        result = export(site, fresh, "--since", since)
        assert "--since" in one_error_line(result) and not fresh.exists()
    assert "not a complete export" in site.cli("archive", "verify", str(busy)).stdout
    # A failure half-way (a rotated access log that is not gzip) removes what was written.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ocsp.log").write_text("")
    (logs / "ocsp.log.1.gz").write_bytes(b"not gzip at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**site.env, "SHIRUSHI_OCSP__ACCESS_LOG": str(logs / "ocsp.log")}
    line = one_error_line(export(site, empty, env=env))
    assert "cannot read OCSP access log" in line and list(empty.iterdir()) == []


def test_rotated_access_logs_are_exported_decompressed(site: Site, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = "2026-01-02T03:04:05Z\t192.0.2.7\tGET\t01\tsha1\tsuccessful\t200\t1693\n"
    new = "2026-11-02T03:04:05Z\t192.0.2.8\tPOST\t02\tsha256\tsuccessful\t200\t1693\n"
    with gzip.open(logs / "ocsp.log.2.gz", "wt") as fh:
        fh.write(old)
    (logs / "ocsp.log.1").write_text(old + new)
    (logs / "ocsp.log").write_text(new)
    env = {**site.env, "SHIRUSHI_OCSP__ACCESS_LOG": str(logs / "ocsp.log")}
    out = tmp_path / "export"
    assert export(site, out, "--since", "2026-06-01", env=env).returncode == 0
    exported = {p.name: p.read_text() for p in (out / "ocsp-access").iterdir()}
    assert exported == {"ocsp.log.2": "", "ocsp.log.1": new, "ocsp.log": new}
    assert sha256sum_ok(out).returncode == 0


def test_serve_prunes_certificates_past_retention(site: Site) -> None:
    """A certificate that expired 8 years ago (seeded as a row) goes within a few retention runs;
    the audit log keeps a record of it and no audit row goes."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=8 * 366)
    stamp = f"{long_ago:%Y-%m-%d %H:%M:%S.%f}"
    with sqlite3.connect(site.data / "shirushi.db") as db:
        (issuer_id,) = db.execute("select id from issuers where name = 'issuing-ca'").fetchone()
        db.execute(
            "insert into certificates (issuer_id, serial, der, subject, dns_names, not_before, not_after,"
            " spki_sha256, kind, created_at, status_version, crl_shown_after_expiry)"
            " values (?, 'abc123', ?, 'CN=old.example.jp', 'old.example.jp', ?, ?, ?, 'server', ?, 0, 0)",
            (issuer_id, PLACEHOLDER_DER, stamp, stamp, "11" * 32, stamp),
        )
        (audit_rows,) = db.execute("select count(*) from audit").fetchone()
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(site.data / "shirushi.db") as db:
            left = db.execute("select count(*) from certificates where serial = 'abc123'").fetchone()[0]
            pruned = [json.loads(d) for (d,) in db.execute("select detail from audit where action = 'retention-prune'")]
            (now_rows,) = db.execute("select count(*) from audit").fetchone()
        if not left:
            break
        assert time.monotonic() < deadline, site.log()[-2000:]
        time.sleep(0.2)
    assert any(p.get("serials") == ["abc123"] and p["certificates"] == 1 for p in pruned), pruned
    assert now_rows > audit_rows
    with sqlite3.connect(site.data / "shirushi.db") as db:
        assert db.execute("select count(*) from certificates where kind = 'server'").fetchone()[0] >= 2
