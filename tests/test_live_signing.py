"""Never dark: a response missing from Redis is signed on demand, never guessed.

Real `shirushi serve` processes (embedded or a private redis-server), a standalone responder,
FLUSHALL to lose the cache; pyca checks every signature against the issuer, pkilint judges the
live-signed response. The counts come from the service's "live signing" log line.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp

from shirushi.asn1.keys import certid_hashes
from support.ocsp_pki import RedisProcess, ResponderProcess
from support.pki import make_csr, make_key, split_pem
from support.seed import seed_certificates
from support.serving import Site

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

VENV_BIN = Path(__file__).parents[1] / ".venv" / "bin"
SEEDED = 300
REVOKED = 3


class Served:
    """A serving site with seeded serials, some revoked, and what a test needs to ask for them."""

    def __init__(self, site: Site, redis_client: redis.Redis) -> None:
        self.site = site
        self.redis = redis_client
        self.issuer = x509.load_pem_x509_certificates((site.data / "certs" / "issuers.pem").read_bytes())[0]
        self.serials = seed_certificates(site.data, SEEDED)
        self.revoked: set[int] = set()

    def revoke_some(self) -> None:
        for serial in self.serials[:REVOKED]:
            result = self.site.cli("revoke", format(serial, "X"), "--reason", "superseded")
            assert result.returncode == 0, result.stdout + result.stderr
            self.revoked.add(serial)

    def request(self, serial: int, alg: hashes.HashAlgorithm | None = None) -> bytes:
        alg = alg or hashes.SHA1()
        name_hash, key_hash = certid_hashes(self.issuer, alg.name)
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, alg)
        return builder.build().public_bytes(serialization.Encoding.DER)

    def get(self, serial: int, alg: hashes.HashAlgorithm | None = None, port: int | None = None) -> Answer:
        path = urllib.parse.quote(base64.b64encode(self.request(serial, alg)).decode(), safe="")
        url = f"http://127.0.0.1:{port or self.site.ocsp_port}/{path}"
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                return Answer(resp.status, resp.headers, resp.read(), time.monotonic() - started)
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read(), time.monotonic() - started)

    def check(self, serial: int, answer: Answer) -> str:
        """The certificate status of a verified answer, or the OCSP error status."""
        response = ocsp.load_der_ocsp_response(answer.body)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return response.response_status.name
        assert response.serial_number == serial
        (signer,) = response.certificates
        signer.verify_directly_issued_by(self.issuer)
        key = signer.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert response.signature_hash_algorithm is not None
        key.verify(
            response.signature, response.tbs_response_bytes, padding.PKCS1v15(), response.signature_hash_algorithm
        )
        return response.certificate_status.name

    def expected(self, serial: int) -> str:
        return "REVOKED" if serial in self.revoked else "GOOD"

    def counts(self) -> dict[str, Any]:
        """The last "live signing" line of the log (zeros before the first)."""
        last: dict[str, Any] = {"signed": 0, "unknown": 0, "over_budget": 0, "failed": 0, "not_mine": 0}
        for line in self.site.log().splitlines():
            if '"event": "live signing"' in line:
                last = json.loads(line)
        return last

    def settled(self) -> dict[str, Any]:
        """The counts once the line for earlier work is out (one is logged every second)."""
        time.sleep(1.5)
        return self.counts()

    def counts_after(self, before: dict[str, Any], field: str, at_least: int, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.counts()
            if now[field] - before[field] >= at_least or time.monotonic() > deadline:
                return now
            time.sleep(0.2)


class Answer:
    def __init__(self, status: int, headers: Message, body: bytes, seconds: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds


def wait_for_log(site: Site, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in site.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{site.log()[-3000:]}"
        time.sleep(0.1)


def start_served(root: Path, **env: str) -> Served:
    site = Site(root, SHIRUSHI_LOG__FORMAT="json", SHIRUSHI_OCSP__WORKERS="2", **env)
    assert site.cli("init").returncode == 0
    client = redis.Redis.from_url(env.get("SHIRUSHI_REDIS__URL") or f"unix://{site.data / 'redis.sock'}")
    served = Served(site, client)
    site.start()
    wait_for_log(site, '"run": "full"')  # the start-up refill finished
    return served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("live")
    s = start_served(root)
    try:
        s.revoke_some()
        yield s
    finally:
        if s.site.proc is not None:
            s.site.stop()
        s.redis.close()


def test_flushed_cache_answers_every_known_serial_correctly(served: Served) -> None:
    served.redis.flushall()
    picks = [*served.revoked, *random.sample(served.serials[REVOKED:], 40)]
    algs = [hashes.SHA1(), hashes.SHA256()]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: served.get(picks[i], algs[i % 2]), range(len(picks))))
    for serial, answer in zip(picks, answers, strict=True):
        assert answer.status == 200
        assert served.check(serial, answer) == served.expected(serial), format(serial, "x")
    # Written to Redis as well: the next request for each is a plain hit.
    assert len(served.redis.keys("shirushi:ocsp:*}:sha*")) >= len(picks)


def test_unissued_serial_is_unauthorized_and_costs_no_signature(served: Served) -> None:
    served.redis.flushall()
    before = served.settled()
    unissued = [random.getrandbits(150) | 1 << 149 for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(served.get, unissued))
    for serial, answer in zip(unissued, answers, strict=True):
        assert served.check(serial, answer) == "UNAUTHORIZED"
    after = served.counts_after(before, "unknown", 20)
    assert after["unknown"] - before["unknown"] == 20
    assert after["signed"] == before["signed"]


def test_concurrent_misses_for_one_key_cost_one_signature(served: Served) -> None:
    served.redis.flushall()
    serial = served.serials[-1]
    before = served.settled()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: served.get(serial), range(64)))
    assert {served.check(serial, a) for a in answers} == {"GOOD"}
    after = served.counts_after(before, "signed", 1)
    assert after["signed"] - before["signed"] == 1


def test_live_signed_response_has_the_presigned_profile(served: Served, tmp_path: Path) -> None:
    serials = []
    for name in ("presigned", "live"):
        (tmp_path / f"{name}.pem").write_bytes(make_csr([f"{name}.example.jp"], key=make_key()))
        result = served.site.cli("issue", "--csr", str(tmp_path / f"{name}.pem"))
        assert result.returncode == 0, result.stderr
        serials.append(split_pem(result.stdout)[0].serial_number)
    presigned = served.get(serials[0])  # signed by the issuance follow-up (the presigner)
    served.redis.flushall()
    before = served.settled()
    live = served.get(serials[1])  # never asked for: in no in-process cache, so signed live
    assert served.counts_after(before, "signed", 1)["signed"] == before["signed"] + 1
    serial = serials[1]
    assert served.check(serial, live) == served.check(serials[0], presigned) == "GOOD"
    assert sorted(live.headers.keys()) == sorted(presigned.headers.keys())
    for name in ("Content-Type", "Cache-Control"):
        assert _shape(live.headers[name]) == _shape(presigned.headers[name]), name
    a, b = ocsp.load_der_ocsp_response(live.body), ocsp.load_der_ocsp_response(presigned.body)
    assert a.responder_key_hash == b.responder_key_hash
    assert [c.public_bytes(serialization.Encoding.DER) for c in a.certificates] == [
        c.public_bytes(serialization.Encoding.DER) for c in b.certificates
    ]
    assert [e.oid for e in a.extensions] == [e.oid for e in b.extensions]
    assert [e.oid for e in a.single_extensions] == [e.oid for e in b.single_extensions]
    assert a.next_update_utc and a.this_update_utc and b.next_update_utc and b.this_update_utc
    assert a.next_update_utc - a.this_update_utc == b.next_update_utc - b.this_update_utc
    assert a.signature_algorithm_oid == b.signature_algorithm_oid
    assert abs(len(a.tbs_response_bytes) - len(b.tbs_response_bytes)) <= 1  # serials may differ by an octet
    lint = shutil.which("lint_ocsp_response") or str(VENV_BIN / "lint_ocsp_response")
    (tmp_path / "live.der").write_bytes(live.body)
    result = subprocess.run([lint, "lint", "-s", "WARNING", str(tmp_path / "live.der")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _shape(value: str) -> str:
    """A header value with its digits blanked: max-age and dates differ, the form must not."""
    return "".join("9" if ch.isdigit() else ch for ch in value)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path / "redis") as server:
        yield server


def test_over_budget_is_try_later_and_a_dead_backend_is_try_later_fast(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    s = start_served(tmp_path / "site", SHIRUSHI_REDIS__URL=redis_server.url, SHIRUSHI_OCSP__LIVE_RATE="1")
    responder = ResponderProcess(
        tmp_path / "standalone", {"SHIRUSHI_DATA_DIR": str(s.site.data), "SHIRUSHI_REDIS__URL": redis_server.url}
    )
    try:
        responder.start()
        # Past the budget (one signature a second): tryLater, never a guess.
        s.redis.flushall()
        before = s.settled()
        picks = random.sample(s.serials, 12)
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(s.get, picks))
        statuses = [s.check(serial, a) for serial, a in zip(picks, answers, strict=True)]
        assert set(statuses) <= {"GOOD", "TRY_LATER"}, statuses
        assert statuses.count("TRY_LATER") >= 6, statuses  # 12 asks, 1 token a second
        after = s.counts_after(before, "over_budget", statuses.count("TRY_LATER"))
        assert after["over_budget"] - before["over_budget"] == statuses.count("TRY_LATER")
        assert after["signed"] - before["signed"] == statuses.count("GOOD")
        # The standalone responder asks the same service.
        time.sleep(1.2)
        fresh = next(x for x, st in zip(picks, statuses, strict=True) if st == "TRY_LATER")
        assert s.check(fresh, s.get(fresh, port=responder.port)) == "GOOD"
        # The backend dies: every miss is tryLater, at once, and the responder stays up.
        assert s.site.proc is not None
        s.site.proc.send_signal(signal.SIGKILL)
        s.site.proc.wait(timeout=30)
        s.site.proc = None
        s.redis.flushall()
        # Not `fresh`: the standalone responder holds its answer in memory, rightly.
        for serial in random.sample([x for x in s.serials if x != fresh], 10):
            answer = s.get(serial, port=responder.port)
            assert s.check(serial, answer) == "TRY_LATER"
            assert answer.seconds < 3.0  # generous: the point is no hang on the dead socket
        assert responder.proc is not None and responder.proc.poll() is None
    finally:
        responder.stop()
        if s.site.proc is not None:
            s.site.stop()
        s.redis.close()
