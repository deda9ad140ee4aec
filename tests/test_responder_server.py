"""The responder end to end: a real server process, real Redis, stock OCSP clients.

The server runs `python -m shirushi.responder` on the port written into the leaf certificates'
AIA; responses are signed and stored as the presigner does (tests/support/ocsp_pki.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import random
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.x509 import ocsp

from shirushi.cache import records
from shirushi.config import Settings
from shirushi.config_status import OCSPSettings, RedisSettings
from shirushi.responder import Options
from support.ocsp_pki import (
    PKI,
    ResponderProcess,
    ThreadedResponder,
    build_pki,
    der_cert_id,
    der_extension,
    der_request,
    free_port,
    get_path,
    http_exchange,
    ocsp_status,
    octets,
    split_responses,
)

LINT = str(Path(sys.executable).with_name("lint_ocsp_response"))
NONCE_OID = "1.3.6.1.5.5.7.48.1.2"

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    port = free_port()
    return build_pki(tmp_path_factory.mktemp("pki"), f"http://127.0.0.1:{port}/")


@pytest.fixture(scope="module")
def server(pki: PKI, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponderProcess]:
    port = urllib.parse.urlsplit(pki.ocsp_url).port
    proc = ResponderProcess(
        tmp_path_factory.mktemp("responder"),
        {
            "SHIRUSHI_REDIS__URL": redis_server,
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
            "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{port}",
            "SHIRUSHI_OCSP__URL": pki.ocsp_url,
            "SHIRUSHI_OCSP__MAX_REQUEST_BYTES": "2048",
        },
    )
    with proc:
        yield proc
    assert proc.proc is not None and proc.proc.returncode == 0


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def new_serial() -> int:
    # Fresh per test: the server's in-process cache outlives the per-test FLUSHALL.
    return random.getrandbits(63) | (1 << 62)


def openssl_ocsp(pki: PKI, leaf: Path, url: str, *extra: str) -> str:
    cmd = [
        "openssl",
        "ocsp",
        "-issuer",
        str(pki.directory / "issuing.pem"),
        *extra,
        "-cert",
        str(leaf),
        "-url",
        url,
        "-CAfile",
        str(pki.directory / "root.pem"),
        "-no_nonce",
        "-resp_text",
        "-timeout",
        "10",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout + done.stderr


def curl(url: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    done = subprocess.run(
        ["curl", "-s", "-S", "--path-as-is", "--max-time", "10", "-D", "-", *extra, url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return split_responses(done.stdout)[-1]


def http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


# --- stock clients --------------------------------------------------------------------------


def test_openssl_good_sha1(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    leaf = pki.issue_leaf(serial)
    pki.store(db, serial)
    out = openssl_ocsp(pki, leaf, pki.ocsp_url)
    assert "Response verify OK" in out
    assert f"{leaf}: good" in out
    assert "Hash Algorithm: sha1" in out


def test_openssl_revoked_sha256(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    leaf = pki.issue_leaf(serial)
    revoked_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    pki.store(db, serial, revoked_at=revoked_at, reason="keyCompromise")
    out = openssl_ocsp(pki, leaf, pki.ocsp_url, "-sha256")
    assert "Response verify OK" in out
    assert f"{leaf}: revoked" in out
    assert "Hash Algorithm: sha256" in out  # the CertID is answered in the algorithm asked
    assert "Reason: keyCompromise" in out


def test_openssl_with_nonce_gets_the_presigned_response(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    """RFC 9919 3.2.1/5: the nonce is not echoed; openssl warns but verifies."""
    serial = new_serial()
    leaf = pki.issue_leaf(serial)
    pki.store(db, serial)
    done = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(pki.directory / "issuing.pem"),
            "-cert",
            str(leaf),
            "-url",
            pki.ocsp_url,
            "-CAfile",
            str(pki.directory / "root.pem"),
            "-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out = done.stdout + done.stderr
    assert "WARNING: no nonce in response" in out
    assert "Response verify OK" in out and f"{leaf}: good" in out


def test_gnutls_ocsptool_good(pki: PKI, server: ResponderProcess, db: redis.Redis, tmp_path: Path) -> None:
    serial = new_serial()
    leaf = pki.issue_leaf(serial)
    pki.store(db, serial)
    # ocsptool trusts a signer whose issuer is in the trust set: the issuing CA, then the root.
    trust = tmp_path / "trust.pem"
    trust.write_bytes((pki.directory / "issuing.pem").read_bytes() + (pki.directory / "root.pem").read_bytes())
    done = subprocess.run(
        [
            "ocsptool",
            f"--ask={pki.ocsp_url}",
            "--load-issuer",
            str(pki.directory / "issuing.pem"),
            "--load-cert",
            str(leaf),
            "--load-trust",
            str(trust),
            "--outfile",
            str(tmp_path / "r.der"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Certificate Status: good" in out
    assert "Verifying OCSP Response: Success" in out


def test_pkilint_accepts_served_responses(pki: PKI, server: ResponderProcess, db: redis.Redis, tmp_path: Path) -> None:
    serial = new_serial()
    pki.store(db, serial)
    for name, path in (("good", get_path(pki.request_der(serial))), ("error", "/garbage")):
        status, _, body = curl(server.url.rstrip("/") + path)
        assert status == 200
        target = tmp_path / f"{name}.der"
        target.write_bytes(body)
        done = subprocess.run([LINT, "lint", "-s", "WARNING", str(target)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# --- GET encodings and caching headers ------------------------------------------------------


def tricky_serial(pki: PKI) -> int:
    """A serial whose SHA-1 request base64 contains '+', '/' and '=' (standards P1)."""
    for serial in range(1 << 40, (1 << 40) + 20000):
        text = base64.b64encode(pki.request_der(serial)).decode()
        if "+" in text and "/" in text and "=" in text:
            return serial
    raise AssertionError("no tricky serial found")


@pytest.mark.parametrize("form", ["quoted", "raw", "double-slash", "unpadded-urlsafe", "absolute-prefix"])
def test_get_encodings(pki: PKI, server: ResponderProcess, db: redis.Redis, form: str) -> None:
    serial = tricky_serial(pki)
    stored = pki.store(db, serial)["sha1"]
    der = pki.request_der(serial)
    text = base64.b64encode(der).decode()
    path = {
        "quoted": "/" + urllib.parse.quote(text, safe=""),
        "raw": "/" + text,
        "double-slash": "//" + text,
        "unpadded-urlsafe": "/" + base64.urlsafe_b64encode(der).decode().rstrip("="),
        "absolute-prefix": "///" + urllib.parse.quote(text, safe=""),
    }[form]
    status, headers, body = curl(server.url.rstrip("/") + path)
    assert status == 200
    assert body == stored.der
    assert headers["content-type"] == "application/ocsp-response"


def test_get_caching_headers_and_304(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    record = pki.store(db, serial, refresh_in=dt.timedelta(seconds=600))["sha1"]
    url = server.url.rstrip("/") + get_path(pki.request_der(serial))
    before = int(time.time())
    status, headers, body = curl(url)
    after = int(time.time())
    assert status == 200 and body == record.der
    assert headers["content-type"] == "application/ocsp-response"
    assert int(headers["content-length"]) == len(record.der)
    assert headers["etag"] == record.etag
    assert headers["last-modified"] == http_date(record.this_update)
    assert headers["expires"] == http_date(record.next_update)
    date = email.utils.parsedate_to_datetime(headers["date"])
    assert before - 1 <= date.timestamp() <= after + 1
    # max-age = min(nextUpdate - now, refresh_by - now, ocsp.max_age=3600): here refresh_by wins.
    cache_control = headers["cache-control"]
    assert cache_control.endswith(", public, no-transform, must-revalidate")
    max_age = int(cache_control.split(",")[0].removeprefix("max-age="))
    assert record.refresh_by - after - 2 <= max_age <= record.refresh_by - before + 1

    status, headers, body = curl(url, "-H", f"If-None-Match: {record.etag}")
    assert status == 304 and body == b""
    assert headers["etag"] == record.etag and "max-age=" in headers["cache-control"]
    status, _, body = curl(url, "-H", 'If-None-Match: "something-else"')
    assert status == 200 and body == record.der
    status, _, _ = curl(url, "-H", f'If-None-Match: "x", W/{record.etag}')
    assert status == 304


def test_max_age_capped_by_setting(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    pki.store(db, serial, refresh_in=dt.timedelta(hours=24))
    _, headers, _ = curl(server.url.rstrip("/") + get_path(pki.request_der(serial)))
    assert headers["cache-control"].startswith("max-age=3600,")


def test_post_and_head(pki: PKI, server: ResponderProcess, db: redis.Redis, tmp_path: Path) -> None:
    serial = new_serial()
    record = pki.store(db, serial)["sha256"]
    request = tmp_path / "req.der"
    request.write_bytes(pki.request_der(serial, "sha256"))
    status, headers, body = curl(
        server.url + "any/path/is/fine",
        "--data-binary",
        f"@{request}",
        "-H",
        "Content-Type: application/ocsp-request",
    )
    assert status == 200 and body == record.der
    assert headers["content-type"] == "application/ocsp-response"
    path = get_path(request.read_bytes()).encode()
    raw = http_exchange(server.port, b"HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b""
    assert b"Content-Length: %d\r\n" % len(record.der) in head


# --- OCSP error statuses --------------------------------------------------------------------


def post(server: ResponderProcess, body: bytes) -> tuple[int, dict[str, str], bytes]:
    raw = http_exchange(
        server.port,
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    return split_responses(raw)[0]


def assert_ocsp_error(answer: tuple[int, dict[str, str], bytes], name: str) -> None:
    status, headers, body = answer
    assert status == 200  # nginx and HAProxy need 200 (standards P20)
    assert headers["content-type"] == "application/ocsp-response"
    assert headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert ocsp_status(body) == name
    assert len(body) == 5  # unsigned, no responseBytes (RFC 6960 2.3)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="not-a-request"),
        pytest.param(der_request([der_cert_id(1), der_cert_id(2)]), id="two-certids"),
        pytest.param(der_request([]), id="no-certid"),
        pytest.param(der_request([der_cert_id(0)]), id="serial-zero"),
        pytest.param(der_request([der_cert_id(-1)]), id="serial-negative"),
        pytest.param(der_request([der_cert_id(1 << 170)]), id="serial-too-long"),
        pytest.param(
            der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, octets(b""))]), id="nonce-empty"
        ),
        pytest.param(
            der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, octets(b"n" * 129))]),
            id="nonce-129",
        ),
    ],
)
def test_malformed_request(server: ResponderProcess, body: bytes) -> None:
    assert_ocsp_error(post(server, body), "MALFORMED_REQUEST")


@pytest.mark.parametrize("path", ["/", "/garbage!", "/%zz", "/MEIw" + "%" * 3, "/favicon.ico"])
def test_malformed_get(server: ResponderProcess, path: str) -> None:
    assert_ocsp_error(curl(server.url.rstrip("/") + path), "MALFORMED_REQUEST")


def test_two_certificates_from_openssl_are_refused(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    """RFC 9919 3.1.1: one Request per OCSPRequest; openssl -cert a -cert b sends two."""
    a, b = new_serial(), new_serial()
    leaf_a, leaf_b = pki.issue_leaf(a), pki.issue_leaf(b)
    pki.store(db, a)
    pki.store(db, b)
    done = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(pki.directory / "issuing.pem"),
            "-cert",
            str(leaf_a),
            "-cert",
            str(leaf_b),
            "-url",
            pki.ocsp_url,
            "-CAfile",
            str(pki.directory / "root.pem"),
            "-no_nonce",
            "-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "malformedrequest" in (done.stdout + done.stderr).lower()


def test_unknown_issuer_is_unauthorized(server: ResponderProcess) -> None:
    assert_ocsp_error(post(server, der_request([der_cert_id(77)])), "UNAUTHORIZED")


def test_unsupported_hash_is_unauthorized(server: ResponderProcess) -> None:
    body = der_request([der_cert_id(77, "2.16.840.1.101.3.4.2.2", b"\x01" * 48, b"\x02" * 48)])
    assert_ocsp_error(post(server, body), "UNAUTHORIZED")


def test_unknown_serial(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    """No record: tryLater while the cache fills, unauthorized once it is complete."""
    serial = new_serial()
    assert_ocsp_error(post(server, pki.request_der(serial)), "TRY_LATER")
    pki.mark_complete(db)
    assert_ocsp_error(post(server, pki.request_der(serial)), "UNAUTHORIZED")
    assert_ocsp_error(curl(server.url.rstrip("/") + get_path(pki.request_der(serial, "sha256"))), "UNAUTHORIZED")


def test_corrupt_record_is_internal_error(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    db.set(records.response_key(pki.issuer_id, "sha1", serial), b"\x09" * 80)
    assert_ocsp_error(post(server, pki.request_der(serial)), "INTERNAL_ERROR")


def test_expired_record_is_never_served(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    """A record past nextUpdate (its TTL should have removed it) gets tryLater, not the stale DER."""
    serial = new_serial()
    der, _, _ = pki.response(serial, validity=dt.timedelta(hours=8))
    now = int(time.time())
    record = records.make_record(der, now - 50000, now - 10, now - 20)
    db.set(records.response_key(pki.issuer_id, "sha1", serial), record.pack())
    assert_ocsp_error(post(server, pki.request_der(serial)), "TRY_LATER")


# --- HTTP behaviour -------------------------------------------------------------------------


def test_wrong_method_is_405(server: ResponderProcess) -> None:
    for method in (b"PUT", b"DELETE", b"OPTIONS", b"BREW"):
        raw = http_exchange(server.port, method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        status, headers, _ = split_responses(raw)[0]
        assert status == 405
        assert headers["allow"] == "GET, HEAD, POST"


def test_http10_host_without_port(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    """OpenSSL and nginx send HTTP/1.0 and Host without port (standards P12)."""
    serial = new_serial()
    record = pki.store(db, serial)["sha1"]
    body = pki.request_der(serial)
    raw = http_exchange(
        server.port,
        b"POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        half_close=False,  # the server must close by itself
    )
    ((status, headers, answer),) = split_responses(raw)
    assert status == 200 and answer == record.der
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(record.der)


def test_pipelined_requests_answered_in_order(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serials = [new_serial() for _ in range(4)]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stored = [pki.store(db, s, revoked_at=now if i % 2 else None)["sha1"] for i, s in enumerate(serials)]
    unknown = new_serial()
    requests = b"".join(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % get_path(pki.request_der(s)).encode()
        for s in [*serials, unknown]
    )
    # The second time, the first answers come from the in-process cache and the rest from Redis.
    for _ in range(2):
        raw = http_exchange(server.port, requests + b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answers = split_responses(raw)
        assert [a[0] for a in answers] == [200] * 6
        assert [a[2] for a in answers[:4]] == [r.der for r in stored]
        assert ocsp_status(answers[4][2]) == "TRY_LATER"
        assert ocsp_status(answers[5][2]) == "MALFORMED_REQUEST"


def test_keep_alive_many_requests_one_connection(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    record = pki.store(db, serial)["sha1"]
    url = server.url.rstrip("/") + get_path(pki.request_der(serial))
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-S",
            "--max-time",
            "10",
            "-w",
            "%{num_connects}\n",
            "-o",
            "/dev/null",
            url,
            "-o",
            "/dev/null",
            url,
            "-o",
            "/dev/null",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.split() == ["1", "0", "0"]
    assert len(record.der) > 0


def test_chunked_post_and_expect_continue(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    record = pki.store(db, serial)["sha1"]
    body = pki.request_der(serial)
    half = len(body) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    raw = http_exchange(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked,
    )
    assert split_responses(raw)[0][2] == record.der
    with socket_to(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < len(record.der):
            data += sock.recv(65536)
        assert data.endswith(record.der)


def socket_to(port: int):  # type: ignore[no-untyped-def]
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + b"\x30" * 4096, 413),
        (b"GET /" + b"A" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: abcdefghijklmnopqrstuvwxyz\r\n" * 400 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),  # TLS hello
    ],
)
def test_http_limits(server: ResponderProcess, request_bytes: bytes, code: int) -> None:
    raw = http_exchange(server.port, request_bytes)
    status, headers, _ = split_responses(raw)[0]
    assert status == code
    assert headers["connection"] == "close"


def test_curl_http10(pki: PKI, server: ResponderProcess, db: redis.Redis) -> None:
    serial = new_serial()
    record = pki.store(db, serial)["sha1"]
    status, headers, body = curl(server.url.rstrip("/") + get_path(pki.request_der(serial)), "--http1.0")
    assert status == 200 and body == record.der
    assert headers["connection"] == "close"


def test_served_response_verifies_offline(pki: PKI, server: ResponderProcess, db: redis.Redis, tmp_path: Path) -> None:
    """The bytes served by GET are the presigned DER: check them with openssl -respin."""
    serial = new_serial()
    leaf = pki.issue_leaf(serial)
    pki.store(db, serial)
    _, _, body = curl(server.url.rstrip("/") + get_path(pki.request_der(serial)))
    (tmp_path / "resp.der").write_bytes(body)
    done = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            str(tmp_path / "resp.der"),
            "-issuer",
            str(pki.directory / "issuing.pem"),
            "-cert",
            str(leaf),
            "-CAfile",
            str(pki.directory / "root.pem"),
            "-no_nonce",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "Response verify OK" in done.stdout + done.stderr
    assert ocsp.load_der_ocsp_response(body).serial_number == serial


def test_tools_present() -> None:
    for tool in ("openssl", "ocsptool", "curl"):
        assert shutil.which(tool), f"{tool} is needed by the responder tests"
    assert Path(LINT).exists()


def test_path_prefix_of_ocsp_url(pki: PKI, redis_server: str, db: redis.Redis, tmp_path: Path) -> None:
    """With ocsp.url = http://host/ocsp/, GETs live under /ocsp/ (also as /ocsp//, HAProxy)."""
    serial = new_serial()
    record = pki.store(db, serial)["sha1"]
    port = free_port()
    settings = Settings(
        data_dir=str(tmp_path),
        redis=RedisSettings(url=redis_server),
        ocsp=OCSPSettings(
            listen=f"127.0.0.1:{port}",
            url=f"http://127.0.0.1:{port}/ocsp/",
            issuers=str(pki.directory / "issuers.pem"),
        ),
    )
    with ThreadedResponder(settings, Options()):
        path = get_path(pki.request_der(serial))
        for prefix in ("/ocsp", "/ocsp/", ""):
            status, _, body = curl(f"http://127.0.0.1:{port}{prefix}{path}")
            assert status == 200 and body == record.der, prefix
