"""Renewal with a new key (policy 4.7): the rules alone, then `POST .../renew` on a running serve."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from shirushi.ca.renewal import RenewalRefused, RenewalWindowError, check_renewable
from shirushi.errors import ConflictError
from shirushi.store import CertificateRecord, Store
from support.http_api import call, is_error
from support.pki import make_csr, make_key
from support.serving import Site
from support.store_rows import audit_entries

TOKEN = "renewal-test-token"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def record(**changes: object) -> CertificateRecord:
    values: dict[str, object] = dict(
        issuer_id="issuing",
        serial=0x1234,
        der=b"",
        subject="CN=a.example.jp",
        dns_names=("a.example.jp",),
        not_before=NOW - dt.timedelta(days=300),
        not_after=NOW + dt.timedelta(days=30),
        spki_sha256="00" * 32,
    )
    values.update(changes)
    return CertificateRecord(**values)  # type: ignore[arg-type]


def test_the_window_opens_90_days_before_expiry() -> None:
    check_renewable(record(not_after=NOW + dt.timedelta(days=90)), NOW, "issuing")
    with pytest.raises(RenewalWindowError, match="can be renewed from 2026-06-01T00:00:01Z"):
        check_renewable(record(not_after=NOW + dt.timedelta(days=90, seconds=1)), NOW, "issuing")


def test_revoked_expired_and_foreign_certificates_are_refused() -> None:
    with pytest.raises(ConflictError, match="revoked"):
        check_renewable(record(revoked_at=NOW, revocation_reason="superseded"), NOW, "issuing")
    with pytest.raises(ConflictError, match="expired"):
        check_renewable(record(not_after=NOW), NOW, "issuing")
    with pytest.raises(RenewalRefused, match="not a subscriber certificate"):
        check_renewable(record(kind="ocsp-signer"), NOW, "issuing")
    with pytest.raises(RenewalRefused, match="not a subscriber certificate"):
        check_renewable(record(issuer_id="other"), NOW, "issuing")


# -- against a running serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("renewal"), SHIRUSHI_API__TOKEN=TOKEN)
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def issue(site: Site, names: list[str], days: int, key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    status, body, _ = call(
        site, "POST", "/api/v1/certificates", {"csr": make_csr(names, key=key).decode(), "days": days}, token=TOKEN
    )
    assert status == 201, body
    return body


def renew(site: Site, serial: str, body: object, *, raw: bytes | None = None) -> tuple[int, dict[str, object]]:
    status, answer, _ = call(site, "POST", f"/api/v1/certificates/{serial}/renew", body, token=TOKEN, raw=raw)
    return status, answer


def store(site: Site) -> Store:
    return Store.open(f"sqlite:///{site.data / 'shirushi.db'}", create=False)


def count(site: Site) -> int:
    with sqlite3.connect(site.data / "shirushi.db") as db:
        return int(db.execute("select count(*) from certificates").fetchone()[0])


@pytest.mark.e2e
def test_renewal_keeps_the_certified_data_and_links_old_and_new(site: Site) -> None:
    old = issue(site, ["renew.example.jp", "www.renew.example.jp"], days=30)
    old_cert = x509.load_pem_x509_certificate(old["certificate"].encode())
    # The CSR asks for other names: a renewal certifies the old ones (a change is 4.8, not 4.7).
    status, new = renew(site, old["serial"], {"csr": make_csr(["other.example.jp"]).decode()})
    assert status == 201, new
    assert set(new) >= {"serial", "certificate", "chain"} and new["renewal_of"] == old["serial"]
    assert new["serial"] != old["serial"]
    assert isinstance(new["certificate"], str) and isinstance(new["chain"], str)
    cert = x509.load_pem_x509_certificate(new["certificate"].encode())
    assert cert.subject == old_cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["renew.example.jp", "www.renew.example.jp"]
    assert cert.public_key() != old_cert.public_key()
    assert len(x509.load_pem_x509_certificates(new["chain"].encode())) == 2
    # The new certificate answers like any issued one.
    status, shown, _ = call(site, "GET", f"/api/v1/certificates/{new['serial']}", token=TOKEN)
    assert status == 200 and shown["status"] == "good"
    # The old one stays good until it expires (renewal is not revocation).
    status, shown, _ = call(site, "GET", f"/api/v1/certificates/{old['serial']}", token=TOKEN)
    assert status == 200 and shown["status"] == "good"
    s = store(site)
    try:
        issued = [e for e in audit_entries(s, "issue") if e["serial"] == str(new["serial"]).lower()]
    finally:
        s.close()
    assert len(issued) == 1
    assert issued[0]["detail"]["renewal_of"] == old["serial"]
    assert issued[0]["detail"]["requested_by"] == "api (token api.token)"


@pytest.mark.e2e
def test_renewal_refusals(site: Site) -> None:
    key = make_key()
    soon = issue(site, ["same.example.jp"], days=30, key=key)
    before = count(site)
    # 400: the old key again.
    status, err = renew(site, soon["serial"], {"csr": make_csr(["same.example.jp"], key=key).decode()})
    assert status == 400 and is_error(err) and err["error"] == "same_key", err
    assert "new key" in str(err["detail"])
    # 422: before the renewal window.
    later = issue(site, ["later.example.jp"], days=200)
    before = count(site)
    status, err = renew(site, later["serial"], {"csr": make_csr(["later.example.jp"]).decode()})
    assert status == 422 and is_error(err) and err["error"] == "renewal_window", err
    assert "90 days before it expires" in str(err["detail"])
    # 409: revoked.
    status, _, _ = call(
        site, "POST", f"/api/v1/certificates/{soon['serial']}/revoke", {"reason": "superseded"}, token=TOKEN
    )
    assert status == 200
    status, err = renew(site, soon["serial"], {"csr": make_csr(["same.example.jp"]).decode()})
    assert status == 409 and is_error(err) and "revoked" in str(err["detail"]), err
    # 409: expired (its notAfter moved into the past in the system of record).
    gone = issue(site, ["gone.example.jp"], days=30)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(site.data / "shirushi.db") as db:
        db.execute("update certificates set not_after = ? where serial = ?", (past, gone["serial"].lower()))
    before = count(site)
    status, err = renew(site, gone["serial"], {"csr": make_csr(["gone.example.jp"]).decode()})
    assert status == 409 and is_error(err) and "expired" in str(err["detail"]), err
    # 404: unknown serial.
    status, err = renew(site, "ABCDEF0123", {"csr": make_csr().decode()})
    assert status == 404 and is_error(err)
    assert count(site) == before


@pytest.mark.e2e
def test_malformed_renewal_requests_change_nothing(site: Site) -> None:
    soon = issue(site, ["malformed.example.jp"], days=30)
    before = count(site)
    good_csr = make_csr(["malformed.example.jp"]).decode()
    cases: list[tuple[str, object, bytes | None]] = [
        (soon["serial"], {}, None),
        (soon["serial"], {"csr": ""}, None),
        (soon["serial"], {"csr": "garbage"}, None),
        (soon["serial"], {"csr": 5}, None),
        (soon["serial"], {"csr": good_csr, "days": "ten"}, None),
        (soon["serial"], {"csr": good_csr, "dns": ["x.example.jp"]}, None),
        (soon["serial"], [good_csr], None),
        (soon["serial"], None, b"{not json"),
        (soon["serial"], None, b"{" + b"x" * (70 * 1024)),
        ("not-hex", {"csr": good_csr}, None),
        ("0", {"csr": good_csr}, None),
    ]
    for serial, body, raw in cases:
        status, err = renew(site, serial, body, raw=raw)
        assert status == 400 and is_error(err), (serial, body, raw and raw[:20], status, err)
    # The route needs a token.
    status, err, _ = call(site, "POST", f"/api/v1/certificates/{soon['serial']}/renew", {"csr": good_csr})
    assert status == 401 and is_error(err)
    assert count(site) == before
