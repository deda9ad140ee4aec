"""The responder's access log (`ocsp.access_log`, policy 5.5.1) with a real responder process.

Each test starts `python -m shirushi.responder` against the session's redis-server and reads the
file the workers append to: one line per answered request within about 2 s, whole lines from two
workers under load, rotation by rename and by SIGHUP, a clear error for an unusable path, no file
when the setting is off, and answering that goes on when writes fail.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shirushi.cache import records
from shirushi.responder import accesslog
from shirushi.responder.accesslog import AccessLog
from support.ocsp_pki import (
    PKI,
    ResponderProcess,
    build_pki,
    der_cert_id,
    der_request,
    get_path,
    http_exchange,
    split_responses,
)

pytestmark = pytest.mark.e2e

LINE = re.compile(
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\t127\.0\.0\.1\t(GET|HEAD|POST|-)\t([0-9A-F]+|-)\t(sha1|sha256|-)\t"
    rb"(successful|malformedRequest|unauthorized|tryLater|internalError|-)\t(\d{3})\t(\d+)\n"
)
SERIAL = 0x1234567890ABCDEF


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"), "http://127.0.0.1:1/")


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def responder(pki: PKI, redis_url: str, directory: Path, **extra: str) -> ResponderProcess:
    env = {"SHIRUSHI_REDIS__URL": redis_url, "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem")}
    env.update({f"SHIRUSHI_OCSP__{k.upper()}": v for k, v in extra.items()})
    return ResponderProcess(directory, env)


def wait_lines(path: Path, count: int, timeout: float = 2.5) -> list[bytes]:
    """The file's lines once it holds at least `count` of them; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {len(lines)} lines after {timeout} s, expected {count}")
        time.sleep(0.02)


def fields(line: bytes) -> tuple[str, ...]:
    """(method, serial, alg, outcome, status, size) of one line; the time is checked here."""
    match = LINE.fullmatch(line)
    assert match, line
    stamp = calendar.timegm(time.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(stamp - time.time()) < 30, line
    return tuple(g.decode() for g in match.groups()[1:])


def post_request(body: bytes, keep_alive: bool = False) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\n"
        b"%sContent-Length: %d\r\n\r\n%s" % (b"" if keep_alive else b"Connection: close\r\n", len(body), body)
    )


def get_request(path: str, *headers: bytes, method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (
        method,
        path.encode(),
        b"".join(h + b"\r\n" for h in headers),
    )


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        assert chunk, "the responder closed the connection"
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- what is written ------------------------------------------------------------------------


def test_each_kind_of_request_gives_its_line(pki: PKI, redis_url: str, db: redis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    stored = pki.store(db, SERIAL)
    corrupt = SERIAL + 1
    db.set(records.response_key(pki.issuer_id, "sha1", corrupt), b"\x09" * 80)
    hex_serial = f"{SERIAL:016X}"
    good_get = get_path(pki.request_der(SERIAL))
    with responder(pki, redis_url, tmp_path, access_log=str(log)) as server:
        sent: list[tuple[bytes, tuple[str, ...]]] = [
            (get_request(good_get), ("GET", hex_serial, "sha1", "successful", "200")),
            (post_request(pki.request_der(SERIAL, "sha256")), ("POST", hex_serial, "sha256", "successful", "200")),
            (get_request(good_get, method=b"HEAD"), ("HEAD", hex_serial, "sha1", "successful", "200")),
            (
                get_request(good_get, b"If-None-Match: " + stored["sha1"].etag.encode()),
                ("GET", hex_serial, "sha1", "successful", "304"),
            ),
            (post_request(b"\x30\x03\x02\x01\x01"), ("POST", "-", "-", "malformedRequest", "200")),
            (get_request("/garbage!"), ("GET", "-", "-", "malformedRequest", "200")),
            (post_request(der_request([der_cert_id(77)])), ("POST", "4D", "sha1", "unauthorized", "200")),
            (post_request(pki.request_der(SERIAL + 2)), ("POST", f"{SERIAL + 2:016X}", "sha1", "tryLater", "200")),
            (post_request(pki.request_der(corrupt)), ("POST", f"{corrupt:016X}", "sha1", "internalError", "200")),
            (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", ("-", "-", "-", "-", "405")),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                ("-", "-", "-", "-", "400"),
            ),
        ]
        expected = []
        for request, want in sent:
            raw = http_exchange(server.port, request)
            assert split_responses(raw)[0][0] == int(want[-1])
            expected.append((*want, str(len(raw))))
        # A memoised request (the same bytes again on a persistent connection, answered from the
        # whole-request memo and the in-process cache) is still one line per request.
        keep = post_request(pki.request_der(SERIAL), keep_alive=True)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(keep)
                size = len(read_post_answer(sock, len(stored["sha1"].der)))
                expected.append(("POST", hex_serial, "sha1", "successful", "200", str(size)))
        finished = time.monotonic()
        lines = wait_lines(log, len(expected))
        assert time.monotonic() - finished < 2.2  # flushed within about a second
        assert [fields(line) for line in lines] == expected

        # Shutdown flushes what is buffered: stop right after one more request.
        raw = http_exchange(server.port, get_request(good_get))
        assert server.stop() == 0
    last = log.read_bytes().splitlines(keepends=True)
    assert len(last) == len(expected) + 1
    assert fields(last[-1]) == ("GET", hex_serial, "sha1", "successful", "200", str(len(raw)))
    assert log.stat().st_mode & 0o777 == 0o640 & ~_umask()


def read_post_answer(sock: socket.socket, der_size: int) -> bytes:
    """Read one keep-alive POST answer (head, then a body of `der_size` octets)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk
        head += chunk
    assert b"Content-Length: %d\r\n" % der_size in head
    return head + recv_exactly(sock, der_size)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- several workers ------------------------------------------------------------------------


def test_two_workers_write_whole_lines_under_load(pki: PKI, redis_url: str, db: redis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    pki.store(db, SERIAL)
    request = post_request(pki.request_der(SERIAL), keep_alive=True)
    threads, per_thread, batch = 8, 1500, 50
    with responder(pki, redis_url, tmp_path, access_log=str(log), workers="2") as server:
        assert server.proc is not None
        answer = http_exchange(server.port, request, half_close=True)
        size = len(answer)
        errors: list[BaseException] = []

        def load() -> None:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    for start in range(0, per_thread, batch):
                        count = min(batch, per_thread - start)
                        sock.sendall(request * count)  # pipelined: parsed one by one
                        recv_exactly(sock, size * count)
                        sock.sendall(request)  # alone in its chunk: the memoised fast path
                        recv_exactly(sock, size)
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=load) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(60)
        assert not errors, errors
        # Both workers hold the file open (each appends with its own descriptor).
        pids = [int(p) for p in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()]
        assert len(pids) == 2
        for pid in pids:
            targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            assert str(log) in targets
        total = 1 + threads * (per_thread + per_thread // batch)
        lines = wait_lines(log, total, timeout=5)
    assert len(lines) == total
    for line in lines:  # every line whole: nothing interleaved within a line
        assert fields(line)[:5] == ("POST", f"{SERIAL:016X}", "sha1", "successful", "200")
    assert log.read_bytes().endswith(b"\n")


# --- rotation -------------------------------------------------------------------------------


def test_rotation_by_rename_and_by_sighup(pki: PKI, redis_url: str, db: redis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    pki.store(db, SERIAL)
    request = get_request(get_path(pki.request_der(SERIAL)))
    with responder(pki, redis_url, tmp_path, access_log=str(log), workers="2") as server:
        assert server.proc is not None
        http_exchange(server.port, request)
        wait_lines(log, 1)
        # logrotate without copytruncate: the file is moved away; the next batch starts a new one.
        log.rename(tmp_path / "access.log.1")
        for _ in range(3):
            http_exchange(server.port, request)
        assert len(wait_lines(log, 3)) == 3
        assert len((tmp_path / "access.log.1").read_bytes().splitlines()) == 1

        # SIGHUP to the supervisor reaches the workers, which reopen at once (no request needed)
        # and keep answering.
        log.rename(tmp_path / "access.log.2")
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 2
        while not log.exists():
            assert time.monotonic() < deadline, "SIGHUP did not reopen the access log"
            time.sleep(0.02)
        http_exchange(server.port, request)
        assert len(wait_lines(log, 1)) == 1
        assert server.proc.poll() is None
    assert server.proc.returncode == 0
    assert len((tmp_path / "access.log.2").read_bytes().splitlines()) == 3


# --- failures and the default ---------------------------------------------------------------


def test_unusable_path_is_one_line_at_start(pki: PKI, redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "missing" / "access.log"
    server = responder(pki, redis_url, tmp_path / "run", access_log=str(log))
    with pytest.raises(RuntimeError, match="exited with 8"):
        server.start()
    text = server.log.read_text()
    assert f"shirushi responder: cannot open ocsp.access_log {log}: No such file or directory" in text
    assert "Traceback" not in text
    assert not log.parent.exists()


def test_off_by_default_writes_no_file(pki: PKI, redis_url: str, db: redis.Redis, tmp_path: Path) -> None:
    pki.store(db, SERIAL)
    with responder(pki, redis_url, tmp_path) as server:
        for _ in range(3):
            http_exchange(server.port, get_request(get_path(pki.request_der(SERIAL))))
        time.sleep(1.3)  # past a flush interval
    assert server.proc is not None and server.proc.returncode == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["responder.log"]


def test_write_errors_do_not_stop_answers(pki: PKI, redis_url: str, db: redis.Redis, tmp_path: Path) -> None:
    """/dev/full refuses every write (ENOSPC): answers go on, one warning a minute at most."""
    pki.store(db, SERIAL)
    request = get_request(get_path(pki.request_der(SERIAL)))
    with responder(pki, redis_url, tmp_path, access_log="/dev/full") as server:
        for _ in range(3):
            assert split_responses(http_exchange(server.port, request))[0][0] == 200
            time.sleep(1.1)  # each request in its own flush
        assert server.stop() == 0
    text = server.log.read_text()
    assert text.count("access log /dev/full: No space left on device") == 1
    assert "3 lines could not be written" in text


def test_failed_batches_are_kept_then_dropped(tmp_path: Path) -> None:
    """Unwritten lines are retried with the next batch, up to MAX_PENDING bytes, then counted."""
    loop = asyncio.new_event_loop()
    try:
        sink = AccessLog(Path("/dev/full"), loop)
        sink.open()
        sink.record(b"127.0.0.1", b"GET\t01\tsha1", accesslog.SUCCESSFUL, 100)
        sink.flush()
        assert sink.errors == 1 and sink.lost == 0 and sink.pending.count(b"\n") == 1
        line_size = len(sink.pending)
        for _ in range(accesslog.MAX_PENDING // line_size + 1):
            sink.entries.append((sink.stamp, b"127.0.0.1", b"GET\t01\tsha1", accesslog.SUCCESSFUL, 100))
        sink.flush()
        assert sink.pending == b"" and sink.lost == accesslog.MAX_PENDING // line_size + 2

        # The file moved back into place: the next flush reopens and writes.
        sink.path = tmp_path / "access.log"
        sink.record(b"::1", b"POST\t-\t-", accesslog.OCSP_ERRORS[1], 5)
        sink.close()
        assert (tmp_path / "access.log").read_bytes() == sink.stamp + b"\t::1\tPOST\t-\t-\tmalformedRequest\t200\t5\n"
    finally:
        loop.close()
