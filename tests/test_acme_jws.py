"""The ACME server's answers to bad JWS requests (RFC 8555 6.2-6.5): each the RFC's problem
type, never a 500. In-process (Starlette's TestClient) over a real initialised data directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.testclient import TestClient

from shirushi.acme.app import create_app
from shirushi.acme.jws import b64encode, jwk_of
from shirushi.backend import Backend
from shirushi.config import load

BASE = "http://testserver/"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load(environ={"SHIRUSHI_DATA_DIR": str(tmp_path), "SHIRUSHI_ACME__URL": BASE})
    backend = Backend(settings)
    backend.init()
    with TestClient(create_app(backend)) as c:
        yield c
    backend.close()


def sign(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: bytes | None) -> bytes:
    protected = b64encode(json.dumps(header).encode())
    body = "" if payload is None else b64encode(payload)
    r, s = decode_dss_signature(key.sign(f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return json.dumps({"protected": protected, "payload": body, "signature": b64encode(sig)}).encode()


def nonce(c: TestClient) -> str:
    return c.head("/acme/new-nonce").headers["Replay-Nonce"]


def post(c: TestClient, path: str, data: bytes) -> Any:
    return c.post(path, content=data, headers={"Content-Type": "application/jose+json"})


def test_jws_errors_are_problem_documents(client: TestClient) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwk_of(key.public_key())
    url = BASE + "acme/new-account"
    n = nonce(client)
    made = post(client, "/acme/new-account", sign(key, {"alg": "ES256", "jwk": jwk, "nonce": n, "url": url}, b"{}"))
    assert made.status_code == 201, made.text
    kid = made.headers["Location"]
    # replayed nonce
    again = post(client, "/acme/new-account", sign(key, {"alg": "ES256", "jwk": jwk, "nonce": n, "url": url}, b"{}"))
    assert again.json()["type"] == "urn:ietf:params:acme:error:badNonce"
    # unknown nonce
    wrong = post(client, "/acme/new-account", sign(key, {"alg": "ES256", "jwk": jwk, "nonce": "x", "url": url}, b"{}"))
    assert wrong.json()["type"] == "urn:ietf:params:acme:error:badNonce"
    # wrong url header
    bad_url = sign(key, {"alg": "ES256", "jwk": jwk, "nonce": nonce(client), "url": BASE + "elsewhere"}, b"{}")
    assert post(client, "/acme/new-account", bad_url).json()["type"] == "urn:ietf:params:acme:error:unauthorized"
    # bad signature: signed by another key
    other = ec.generate_private_key(ec.SECP256R1())
    forged = sign(other, {"alg": "ES256", "kid": kid, "nonce": nonce(client), "url": BASE + "acme/new-order"}, b"{}")
    answer = post(client, "/acme/new-order", forged)
    assert answer.status_code == 400 and answer.json()["type"] == "urn:ietf:params:acme:error:malformed"
    # unknown account
    ghost = BASE + "acme/acct/nobody"
    lost = sign(key, {"alg": "ES256", "kid": ghost, "nonce": nonce(client), "url": BASE + "acme/new-order"}, b"{}")
    assert post(client, "/acme/new-order", lost).json()["type"] == "urn:ietf:params:acme:error:accountDoesNotExist"
    # unsupported algorithm
    hs = sign(key, {"alg": "HS256", "jwk": jwk, "nonce": nonce(client), "url": url}, b"{}")
    assert post(client, "/acme/new-account", hs).json()["type"] == "urn:ietf:params:acme:error:badSignatureAlgorithm"
    # not JSON at all
    junk = post(client, "/acme/new-order", b"not json")
    assert junk.status_code == 400 and junk.json()["type"] == "urn:ietf:params:acme:error:malformed"
    # deactivation is final
    off = sign(key, {"alg": "ES256", "kid": kid, "nonce": nonce(client), "url": kid}, b'{"status": "deactivated"}')
    assert post(client, kid.removeprefix(BASE.rstrip("/")), off).json()["status"] == "deactivated"
    after = sign(key, {"alg": "ES256", "kid": kid, "nonce": nonce(client), "url": BASE + "acme/new-order"}, b"{}")
    assert post(client, "/acme/new-order", after).json()["type"] == "urn:ietf:params:acme:error:unauthorized"


def test_an_issuing_ca_without_the_dv_policy_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The default issuing CA lists the OV policy only (ca.issuing_ca_policy = "ov").
    settings = load(environ={"SHIRUSHI_DATA_DIR": str(tmp_path), "SHIRUSHI_ACME__URL": BASE})
    backend = Backend(settings)
    backend.init()
    with caplog.at_level("WARNING", logger="shirushi.acme"):
        create_app(backend)
    assert "issuing CA lists neither the DV policy nor anyPolicy" in caplog.text
    backend.close()
