"""`POST /api/v1/certificates` on a running serve refuses a known-weak key (BR 6.1.1.3) with a 422
JSON error of its own, and issues nothing."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.http_api import call
from support.pki import make_csr
from support.serving import Site
from support.weak_keys import fermat_close_key, small_factor_key

pytestmark = pytest.mark.e2e

TOKEN = "weak-keys-api-token"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("weak-api"), SHIRUSHI_API__TOKEN=TOKEN)
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def server_rows(site: Site) -> tuple[int, int]:
    with sqlite3.connect(site.data / "shirushi.db") as db:
        (certificates,) = db.execute("select count(*) from certificates where kind = 'server'").fetchone()
        (issued,) = db.execute("select count(*) from audit where action = 'issue'").fetchone()
    return certificates, issued


@pytest.mark.parametrize(("make", "weakness"), [(fermat_close_key, "fermat"), (small_factor_key, "small")])
def test_a_weak_key_gets_its_own_422_and_nothing_is_issued(
    site: Site, make: Callable[[], rsa.RSAPrivateKey], weakness: str
) -> None:
    key = make()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    before = server_rows(site)
    status, body, headers = call(site, "POST", "/api/v1/certificates", {"csr": make_csr(key=key).decode()}, token=TOKEN)
    assert status == 422 and headers["content-type"].startswith("application/json"), body
    assert body["error"] == "weak_key" and body["weakness"].startswith(weakness), body
    assert body["detail"].startswith(f"key refused: weak key ({body['weakness']}): ") and "BR 6.1.1.3" in body["detail"]
    assert body["spki_sha256"] == hashlib.sha256(spki).hexdigest()
    assert server_rows(site) == before
    # The same door still issues for a sound key.
    status, body, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token=TOKEN)
    assert status == 201, body
    assert server_rows(site) == (before[0] + 1, before[1] + 1)
