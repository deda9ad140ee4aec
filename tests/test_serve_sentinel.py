"""`shirushi serve` with redis.mode = "sentinel", end to end on a real Sentinel set-up.

Issue, revoke (CLI and API), presign and answer through the sentinels; no embedded Redis; kill -9
the primary under bounded load: the responder workers answer correctly or tryLater, never "good"
for a revoked serial; after the failover revocations and issuance work and reach every worker
within the usual bound.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pki import make_csr, split_pem
from support.sentinel import SentinelSet
from support.serving import Site

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

GOOD, REVOKED, TRY_LATER = "GOOD", "REVOKED", "TRY_LATER"
WORKERS = 2
TOKEN = "sentinel-test-token"
# Generous on a loaded machine: a replica's acknowledgement of a WAIT (budget: half of this) once
# took over the default 2 s here.
REDIS_TIMEOUT = "4"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, SentinelSet]]:
    with SentinelSet(tmp_path / "redis").running() as sentinels:
        s = Site(
            tmp_path / "serve",
            SHIRUSHI_OCSP__WORKERS=str(WORKERS),
            SHIRUSHI_API__TOKEN=TOKEN,
            SHIRUSHI_REDIS__TIMEOUT=REDIS_TIMEOUT,
            **sentinels.env,
        )
        assert s.cli("init").returncode == 0
        with s.serving():
            yield s, sentinels


class Issued:
    count = 0

    def __init__(self, site: Site) -> None:
        Issued.count += 1
        csr = site.root / f"req-{Issued.count}.pem"
        csr.write_bytes(make_csr(["sentinel.example.jp"]))
        result = site.cli("issue", "--csr", str(csr))
        assert result.returncode == 0, result.stderr
        self.cert, self.issuer = split_pem(result.stdout)
        self.serial = format(self.cert.serial_number, "X")
        builder = ocsp.OCSPRequestBuilder().add_certificate(self.cert, self.issuer, hashes.SHA1())
        self.request = builder.build().public_bytes(serialization.Encoding.DER)


def status(site: Site, leaf: Issued) -> str:
    """One OCSP POST on a fresh connection (the kernel picks a worker): "GOOD", "REVOKED", an error status."""
    req = urllib.request.Request(site.ocsp_url, data=leaf.request, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = ocsp.load_der_ocsp_response(resp.read())
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return answer.response_status.name
    return answer.certificate_status.name


def everywhere(site: Site, leaf: Issued, want: str, within: float) -> float:
    """Probe on fresh connections (the kernel spreads them over the workers) until WORKERS * 5 in
    a row answer `want`; a probe that started more than `within` seconds in and answered
    otherwise fails. Returns when the last other answer was seen (seconds)."""
    start = time.monotonic()
    streak, last_other = 0, 0.0
    while streak < WORKERS * 5:
        asked = time.monotonic() - start
        got = status(site, leaf)
        if got == want:
            streak += 1
        else:
            assert asked < within, f"{leaf.serial}: {got}, not {want}, {asked:.2f} s in (bound {within} s)"
            streak, last_other = 0, asked
    return last_other


def api_revoke(site: Site, serial: str) -> int:
    req = urllib.request.Request(
        f"{site.api_url}/api/v1/certificates/{serial}/revoke",
        data=json.dumps({"reason": "superseded"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serve_through_sentinel_and_a_primary_crash(site: tuple[Site, SentinelSet]) -> None:
    s, sentinels = site
    assert "redis-server" not in s.processes()  # mode = "sentinel": nothing embedded
    assert not (s.data / "redis.sock").exists()

    revoked, good = Issued(s), Issued(s)  # presigned through the sentinels' primary
    assert status(s, revoked) == GOOD and status(s, good) == GOOD
    result = s.cli("revoke", revoked.serial, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    everywhere(s, revoked, REVOKED, 1.0)
    with urllib.request.urlopen(f"{s.metrics_url}/readyz", timeout=10) as resp:
        assert resp.status == 200

    answers: list[tuple[float, str, str]] = []
    stop = threading.Event()

    def load() -> None:  # bounded: one request at a time, for the failover's few seconds
        while not stop.is_set():
            for leaf in (revoked, good):
                try:
                    answers.append((time.monotonic(), leaf.serial, status(s, leaf)))
                except OSError as exc:
                    answers.append((time.monotonic(), leaf.serial, f"ERROR {exc}"))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        killed_at = time.monotonic()
        old = sentinels.kill_primary()
        sentinels.wait_failover(old)
        failed_over = time.monotonic()
        everywhere(s, good, GOOD, 15)
    finally:
        stop.set()
        thread.join(30)
    allowed = {revoked.serial: (REVOKED, TRY_LATER), good.serial: (GOOD, TRY_LATER)}
    wrong = [a for a in answers if a[2] not in allowed[a[1]]]
    assert wrong == [], wrong[:5]
    assert len([a for a in answers if killed_at <= a[0] <= failed_over]) > 10

    # After the failover: the API (serve's own Redis client) revokes, and every worker sees it.
    assert api_revoke(s, good.serial) == 200
    everywhere(s, good, REVOKED, 1.0)
    fresh = Issued(s)  # issuance presigns on the new primary
    assert status(s, fresh) == GOOD
    assert s.cli("revoke", fresh.serial, "--reason", "superseded").returncode == 0
    everywhere(s, fresh, REVOKED, 1.0)
    assert s.proc is not None and s.proc.poll() is None
