"""The repository app in-process: exact CDP URLs (also under a path prefix), types, validators."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from starlette.testclient import TestClient

from shirushi import config
from shirushi.backend import Backend
from shirushi.clock import FrozenClock
from shirushi.web.repository import create_app

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def site(tmp_path: Path, repo_url: str) -> tuple[Backend, TestClient]:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
            "SHIRUSHI_REPOSITORY__URL": repo_url,
            "SHIRUSHI_REDIS__URL": f"unix://{tmp_path}/none.sock",
        },
    )
    clock = FrozenClock(T0)
    backend = Backend(settings, clock)
    backend.init()
    return backend, TestClient(create_app(settings, clock))


def test_crl_at_the_cdp_url_under_a_path_prefix(tmp_path: Path) -> None:
    backend, client = site(tmp_path, "http://pki.example.jp/repo/")
    assert client.get("/repo/issuing-ca.crl").status_code == 404  # nothing published yet
    assert client.get("/repo/health").status_code == 503
    backend.crls.generate("issuing-ca", scheduled=True)
    backend.crls.generate("root", scheduled=True)
    issuing = x509.load_pem_x509_certificate((backend.settings.data_path / "certs" / "issuing-ca.pem").read_bytes())
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
    assert cdp == "http://pki.example.jp/repo/root.crl"
    response = client.get("/repo/root.crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    assert response.headers["last-modified"] == "Sun, 29 Nov 2026 09:00:00 GMT"
    assert response.headers["expires"] == "Tue, 29 Dec 2026 09:00:00 GMT"
    assert "max-age=3600" in response.headers["cache-control"]
    x509.load_der_x509_crl(response.content)
    assert client.get("/repo/root.crl", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    assert client.get("/root.crl").status_code == 404
    assert client.get("/repo/health").status_code == 200
    backend.close()


def test_max_age_never_past_next_update(tmp_path: Path) -> None:
    backend, client = site(tmp_path, "http://127.0.0.1:8081/")
    backend.crls.generate("issuing-ca", scheduled=True)
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(dt.timedelta(hours=95, minutes=50))
    response = client.get("/issuing-ca.crl")
    assert "max-age=600" in response.headers["cache-control"]
    backend.close()


def test_certificates_and_documents(tmp_path: Path) -> None:
    backend, client = site(tmp_path, "http://127.0.0.1:8081/")
    der = client.get("/issuing-ca.crt")
    assert der.headers["content-type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(der.content).subject.rfc4514_string().startswith("CN=Shirushi Demo Issuing")
    pem = client.get("/root.pem")
    assert pem.headers["content-type"] == "application/x-pem-file"
    assert pem.text.startswith("-----BEGIN CERTIFICATE-----")
    assert client.get("/ocsp-signer.crt").status_code == 404  # only CA certificates are published
    assert client.get("/cp").status_code == 200
    assert client.get("/cps").text.startswith("Shirushi Demo CA - Certification Practice Statement")
    assert client.get("/../keys/root.key").status_code == 404
    refused = client.post("/issuing-ca.crl")  # RFC 9110 15.5.6: a 405 MUST carry Allow
    assert refused.status_code == 405 and set(refused.headers["allow"].split(", ")) == {"GET", "HEAD"}
    for path in ("/", "/health", "/root.pem", "/cps"):
        assert set(client.delete(path).headers["allow"].split(", ")) == {"GET", "HEAD"}, path
    backend.close()


def _links(page: str) -> list[str]:
    from html.parser import HTMLParser

    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v for k, v in attrs if tag == "a" and k == "href" and v)

    Links().feed(page)
    return found


def test_root_is_an_index_of_what_is_served(tmp_path: Path) -> None:
    backend, client = site(tmp_path, "http://127.0.0.1:8081/")
    before = client.get("/")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/html")
    assert "issuing-ca.crl" not in _links(before.text)  # nothing published yet: not linked
    backend.crls.generate("issuing-ca", scheduled=True)
    backend.crls.generate("root", scheduled=True)
    page = client.get("/")
    links = _links(page.text)
    assert links == [
        "/issuing-ca.crl",
        "/root.crl",
        "/issuing-ca.crt",
        "/issuing-ca.pem",
        "/root.crt",
        "/root.pem",
        "/cp",
        "/cps",
    ]
    for link in links:  # every link answers
        assert client.get(link).status_code == 200, link
    assert client.head("/").status_code == 200
    backend.close()


def test_index_under_a_path_prefix(tmp_path: Path) -> None:
    backend, client = site(tmp_path, "http://pki.example.jp/repo/")
    backend.crls.generate("issuing-ca", scheduled=True)
    page = client.get("/repo/")
    assert page.status_code == 200
    links = _links(page.text)
    assert "/repo/issuing-ca.crl" in links and "/repo/root.crl" not in links
    for link in links:
        assert client.get(link).status_code == 200, link
    assert client.get("/").status_code == 404  # outside the prefix nothing is served
    backend.close()
