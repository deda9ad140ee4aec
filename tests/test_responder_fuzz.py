"""Fuzz the running server over real sockets: no 5xx, no hang, no exception, still serving."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ocsp_pki import PKI, ResponderProcess, build_pki, get_path, ocsp_status, split_responses

pytestmark = pytest.mark.e2e

SERIAL = 0x5EED


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[tuple[PKI, ResponderProcess]]:
    pki = build_pki(tmp_path_factory.mktemp("pki"), "http://127.0.0.1:1/")
    client = redis.Redis.from_url(redis_server)
    pki.store(client, SERIAL)
    client.close()
    proc = ResponderProcess(
        tmp_path_factory.mktemp("fuzz"),
        {
            "SHIRUSHI_REDIS__URL": redis_server,
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
            "SHIRUSHI_OCSP__MAX_REQUEST_BYTES": "1024",
            "SHIRUSHI_OCSP__WORKERS": "2",
        },
    )
    with proc:
        yield pki, proc
    assert proc.proc is not None and proc.proc.returncode == 0
    log = proc.log.read_text()
    assert "Traceback" not in log and "Exception" not in log and "ERROR" not in log, log


def exchange(port: int, data: bytes) -> bytes:
    """Send, half-close, read to the end; the server must finish within a few seconds."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early, e.g. 413 before the body was sent
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    assert time.monotonic() - start < 4.5, "the server did not finish"
    return out


def check_statuses(data: bytes) -> None:
    """Every status line in the reply is a well-formed non-5xx status."""
    for line in data.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            code = int(line[9:12])
            assert 100 <= code < 500, line


TOKENS = [
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b" ",
    b"/",
    b"//",
    b"%",
    b"%2F",
    b"+",
    b"=",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"Host: x",
    b"Content-Length: ",
    b"5",
    b"-1",
    b"99999999999",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"If-None-Match: *",
    b"0\r\n\r\n",
    b"MEIwQDA+MDwwOjAJBgUrDgMCGgUABBT7",
    b"\x00",
    b"\xff",
    b"\x30\x03\x0a\x01\x01",
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["tokens", "binary", "valid-mutated", "pipeline"]))
    if kind == "tokens":
        return b"".join(draw(st.lists(st.sampled_from(TOKENS), max_size=30)))
    if kind == "binary":
        return draw(st.binary(max_size=600))
    base = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n\x30\x03\x0a\x01\x01"
        b"GET /MEIw%2B%2F HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    if kind == "pipeline":
        return base * draw(st.integers(1, 20))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_http_fuzz(setup: tuple[PKI, ResponderProcess], data: bytes) -> None:
    _, server = setup
    check_statuses(exchange(server.port, data))


def test_still_serving_after_fuzz(setup: tuple[PKI, ResponderProcess]) -> None:
    pki, server = setup
    for _ in range(4):  # reach both workers (the kernel spreads connections)
        raw = exchange(server.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % get_path(pki.request_der(SERIAL)).encode())
        ((status, _, body),) = split_responses(raw)
        assert status == 200 and ocsp_status(body) == "SUCCESSFUL/GOOD"


def test_big_bodies_and_floods(setup: tuple[PKI, ResponderProcess], tmp_path: Path) -> None:
    _, server = setup
    # A huge declared body is refused before it is read.
    check_statuses(
        exchange(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 200000)
    )
    # Thousands of pipelined requests in one go are all answered, in order, without a hang.
    flood = b"GET /%2F HTTP/1.1\r\nHost: x\r\n\r\n" * 3000
    answers = split_responses(exchange(server.port, flood))
    assert len(answers) == 3000 and all(a[0] == 200 for a in answers)
