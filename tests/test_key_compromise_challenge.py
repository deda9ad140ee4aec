"""Key-compromise proof by challenge (policy 4.9.12): the signature check alone, then the two
routes on a running serve, with signatures made by stock `openssl dgst`."""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from shirushi.errors import InputError
from shirushi.web.key_proof import CHALLENGE_PREFIX, ProofRefused, check_challenge_signature, load_public_key
from support.http_api import call, is_error
from support.pki import make_csr, make_key
from support.serving import Site

TOKEN = "challenge-test-token"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_signatures_rsa_and_ecdsa() -> None:
    data = CHALLENGE_PREFIX + b"\x00" * 32
    rsa_key = make_key()
    check_challenge_signature(rsa_key.public_key(), data, rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    check_challenge_signature(ec_key.public_key(), data, ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(ProofRefused):  # PSS is not what the interface names
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        check_challenge_signature(rsa_key.public_key(), data, rsa_key.sign(data, pss, hashes.SHA256()))
    with pytest.raises(ProofRefused):  # another hash
        check_challenge_signature(rsa_key.public_key(), data, rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA384()))
    with pytest.raises(ProofRefused):  # other bytes
        check_challenge_signature(ec_key.public_key(), data + b"x", ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(ProofRefused):
        check_challenge_signature(ec_key.public_key(), data, b"\x30\x00")


def test_public_keys() -> None:
    assert isinstance(load_public_key(public_pem(make_key())), rsa.RSAPublicKey)
    for bad in ("", "garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(InputError):
            load_public_key(bad)


# -- against a running serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(
        tmp_path_factory.mktemp("challenge"),
        SHIRUSHI_API__TOKEN=TOKEN,
        SHIRUSHI_CA__SUBSCRIBER_KEY_TYPES="rsa,ecdsa-p256",
        SHIRUSHI_API__OPEN_REQUESTS_PER_MINUTE="1000",
    )
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def issue(site: Site, key: PrivateKey, name: str) -> str:
    status, body, _ = call(
        site, "POST", "/api/v1/certificates", {"csr": make_csr([name], key=key).decode()}, token=TOKEN
    )
    assert status == 201, body
    return str(body["serial"])


def challenge(site: Site, key: PrivateKey) -> dict[str, Any]:
    status, body, _ = call(site, "POST", "/api/v1/key-compromise/challenge", {"public_key": public_pem(key)})
    assert status == 200, body
    return body


def openssl_sign(key: PrivateKey, data: bytes, tmp: Path) -> str:
    """The signature `openssl dgst -sha256 -sign` makes: PKCS#1 v1.5 for RSA, DER ECDSA for EC."""
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp / "challenge.bin").write_bytes(data)
    subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-sign",
            str(tmp / "key.pem"),
            "-out",
            str(tmp / "sig.bin"),
            str(tmp / "challenge.bin"),
        ],
        check=True,
        capture_output=True,
    )
    return base64.b64encode((tmp / "sig.bin").read_bytes()).decode()


def report(site: Site, key: PrivateKey, value: str, signature: str) -> tuple[int, dict[str, Any]]:
    body = {"public_key": public_pem(key), "challenge": value, "signature": signature}
    status, answer, _ = call(site, "POST", "/api/v1/key-compromise", body)
    return status, answer


def status_of(site: Site, serial: str) -> dict[str, Any]:
    status, body, _ = call(site, "GET", f"/api/v1/certificates/{serial}", token=TOKEN)
    assert status == 200
    return body


def parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@pytest.mark.e2e
@pytest.mark.oracle
@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_a_signed_challenge_revokes_every_certificate_with_the_key(site: Site, tmp_path: Path, kind: str) -> None:
    key: PrivateKey = make_key() if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    serials = [issue(site, key, f"{kind}{i}.challenge.example.jp") for i in range(2)]
    answer = challenge(site, key)
    assert set(answer) == {"challenge", "expires_at"}
    value = base64.b64decode(answer["challenge"], validate=True)
    assert value.startswith(CHALLENGE_PREFIX) and len(value) == len(CHALLENGE_PREFIX) + 32
    assert abs(parse(answer["expires_at"]) - dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)) < dt.timedelta(minutes=1)
    signature = openssl_sign(key, value, tmp_path)
    status, body = report(site, key, answer["challenge"], signature)
    assert status == 200, body
    assert sorted(body["revoked"]) == sorted(serials)
    for serial in serials:
        assert status_of(site, serial)["revocation"]["reason"] == "keyCompromise"
    # The key is blocked from issuance (BR 6.1.1.3), and the challenge is spent.
    status, err, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr(key=key).decode()}, token=TOKEN)
    assert status == 422 and "blocked" in err["detail"]
    status, err = report(site, key, answer["challenge"], signature)
    assert status == 422 and is_error(err) and "already used" in err["detail"], err


@pytest.mark.e2e
@pytest.mark.oracle
def test_refused_proofs_revoke_nothing_and_leave_the_challenge_usable(site: Site, tmp_path: Path) -> None:
    key, other = make_key(), make_key()
    serial = issue(site, key, "refused.challenge.example.jp")
    answer = challenge(site, key)
    value = base64.b64decode(answer["challenge"])
    good = openssl_sign(key, value, tmp_path)
    refused = [
        # Signed by another key.
        (key, answer["challenge"], openssl_sign(other, value, tmp_path), 422),
        # The challenge was made for another key (the signature matches that other key).
        (other, answer["challenge"], openssl_sign(other, value, tmp_path), 422),
        # A challenge this CA never made.
        (key, base64.b64encode(CHALLENGE_PREFIX + b"\x01" * 32).decode(), good, 422),
        # Over other bytes.
        (key, answer["challenge"], openssl_sign(key, value + b"!", tmp_path), 422),
    ]
    for signer, value_b64, signature, expected in refused:
        status, err = report(site, signer, value_b64, signature)
        assert status == expected and is_error(err), err
    assert status_of(site, serial)["status"] == "good"
    # Malformed: 400, nothing done.
    pem = public_pem(key)
    for body in (
        {"public_key": pem, "challenge": answer["challenge"]},
        {"public_key": pem, "signature": good},
        {"challenge": answer["challenge"], "signature": good},
        {"public_key": "garbage", "challenge": answer["challenge"], "signature": good},
        {"public_key": pem, "challenge": "not base64!", "signature": good},
        {"public_key": pem, "challenge": answer["challenge"], "signature": "%%%"},
        {"public_key": pem, "challenge": answer["challenge"], "signature": "A" * 10000},
        {"public_key": pem, "challenge": "A" * 1000, "signature": good},
        {"public_key": 5, "challenge": answer["challenge"], "signature": good},
    ):
        status, err, _ = call(site, "POST", "/api/v1/key-compromise", body)
        assert status == 400 and is_error(err), (body.keys(), err)
    for body in ({}, {"public_key": "garbage"}, {"public_key": ""}, {"public_key": ["x"]}):
        status, err, _ = call(site, "POST", "/api/v1/key-compromise/challenge", body)
        assert status == 400 and is_error(err), err
    status, err, _ = call(site, "POST", "/api/v1/key-compromise/challenge", raw=b"{" * 20000)
    assert status == 413 and is_error(err) and err["error"] == "too_large", err  # over the body's bound
    assert status_of(site, serial)["status"] == "good"
    # The right signature still works: refusals did not spend the challenge.
    status, body = report(site, key, answer["challenge"], good)
    assert status == 200 and body["revoked"] == [serial], body


@pytest.mark.e2e
@pytest.mark.oracle
def test_an_expired_challenge_is_refused(site: Site, tmp_path: Path) -> None:
    key = make_key()
    serial = issue(site, key, "expired.challenge.example.jp")
    answer = challenge(site, key)
    value = base64.b64decode(answer["challenge"])
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(site.data / "shirushi.db") as db:
        assert (
            db.execute("update key_challenges set expires_at = ? where challenge = ?", (past, value.hex())).rowcount
            == 1
        )
    status, err = report(site, key, answer["challenge"], openssl_sign(key, value, tmp_path))
    assert status == 422 and "expired" in err["detail"], err
    assert status_of(site, serial)["status"] == "good"


@pytest.mark.e2e
@pytest.mark.oracle
def test_a_challenge_survives_a_restart(tmp_path: Path) -> None:
    s = Site(tmp_path / "restart", SHIRUSHI_API__TOKEN=TOKEN)
    assert s.cli("init").returncode == 0
    key = make_key()
    with s.serving():
        serial = issue(s, key, "restart.challenge.example.jp")
        answer = challenge(s, key)
    # Another serve process, after the first stopped: the challenge lives in the database.
    with s.serving():
        value = base64.b64decode(answer["challenge"])
        status, body = report(s, key, answer["challenge"], openssl_sign(key, value, tmp_path))
        assert status == 200 and body["revoked"] == [serial], body


@pytest.mark.e2e
def test_the_challenge_route_is_rate_limited(tmp_path: Path) -> None:
    s = Site(tmp_path / "limited", SHIRUSHI_API__TOKEN=TOKEN, SHIRUSHI_API__OPEN_REQUESTS_PER_MINUTE="2")
    assert s.cli("init").returncode == 0
    key = make_key()
    with s.serving():
        body = {"public_key": public_pem(key)}
        statuses = [call(s, "POST", "/api/v1/key-compromise/challenge", body)[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        with sqlite3.connect(s.data / "shirushi.db") as db:
            assert db.execute("select count(*) from key_challenges").fetchone()[0] == 2
        assert call(s, "POST", "/api/v1/key-compromise/challenge", body, source="127.0.0.3")[0] == 200
