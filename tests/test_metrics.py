"""Metrics and health of a running `serve`: /metrics, /healthz, /readyz, scraped by a real Prometheus.

The values must move with what the test does (issue, revoke, OCSP queries), `promtool check
metrics` must accept the exposition, and a Prometheus server started here must scrape it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pki import make_csr, split_pem
from support.serving import Site, free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]
TOKEN = "metrics-token"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("metrics"), SHIRUSHI_API__TOKEN=TOKEN)
    assert s.cli("init").returncode == 0
    with s.serving():
        wait_port(s.metrics_port, s.proc)
        yield s


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(site: Site) -> dict[str, float]:
    """`name{labels}` -> value, from the exposition (comments dropped)."""
    status, body = http(site.metrics_url + "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def total(values: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in values.items() if (k == name or k.startswith(name + "{")) and all(w in k for w in wanted))


def issue(site: Site, name: str) -> tuple[x509.Certificate, x509.Certificate]:
    body = json.dumps({"csr": make_csr([name]).decode()}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, answer = http(site.api_url + "/api/v1/certificates", body, headers)
    assert status == 201, answer
    doc = json.loads(answer)
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    return cert, split_pem(doc["chain"])[0]


def revoke(site: Site, cert: x509.Certificate) -> None:
    body = json.dumps({"reason": "superseded"}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    serial = format(cert.serial_number, "X")
    status, answer = http(site.api_url + f"/api/v1/certificates/{serial}/revoke", body, headers)
    assert status == 200, answer


def ask(site: Site, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPCertStatus:
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    status, body = http(
        site.ocsp_url,
        der.public_bytes(serialization.Encoding.DER),
        {"Content-Type": "application/ocsp-request"},
    )
    assert status == 200
    return ocsp.load_der_ocsp_response(body).certificate_status


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_health_and_readiness(site: Site) -> None:
    status, body = http(site.metrics_url + "/healthz")
    assert status == 200 and json.loads(body) == {"status": "alive"}
    status, body = http(site.metrics_url + "/readyz")
    doc = json.loads(body)
    assert status == 200, doc
    assert doc["ready"] is True
    assert set(doc["checks"]) == {"startup", "database", "redis", "responders", "ocsp"}
    status, body = http(site.metrics_url + "/nothing")
    assert status == 404 and set(json.loads(body)) == {"error", "detail"}
    status, _ = http(site.metrics_url + "/metrics", b"x")
    assert status == 405


def test_values_follow_issuance_revocation_and_queries(site: Site) -> None:
    before = samples(site)
    cert, issuer = issue(site, "metrics.example.jp")
    for _ in range(3):
        assert ask(site, cert, issuer) == ocsp.OCSPCertStatus.GOOD
    revoke(site, cert)
    assert ask(site, cert, issuer) == ocsp.OCSPCertStatus.REVOKED
    status, _ = http(site.ocsp_url + "not-base64!")  # a malformed GET: an OCSP error, no status

    def moved() -> bool:
        after = samples(site)
        good = total(after, "shirushi_ocsp_requests_total", method="POST", cert_status="good")
        revoked = total(after, "shirushi_ocsp_requests_total", method="POST", cert_status="revoked")
        return (
            good - total(before, "shirushi_ocsp_requests_total", method="POST", cert_status="good") >= 3
            and revoked - total(before, "shirushi_ocsp_requests_total", method="POST", cert_status="revoked") >= 1
        )

    wait_for(moved)  # responders flush their counts four times a second
    after = samples(site)
    assert total(after, "shirushi_certificates_issued_total") >= total(before, "shirushi_certificates_issued_total") + 1
    assert total(after, "shirushi_revocations_total", reason="superseded") >= 1
    assert total(after, "shirushi_revocation_propagation_seconds_count") >= 1
    assert total(after, "shirushi_ocsp_requests_total", outcome="malformedRequest") >= 1
    assert total(after, "shirushi_ocsp_request_duration_seconds_count") >= 5
    assert total(after, "shirushi_signatures_total", signer="issuing-ca") >= 1
    assert total(after, "shirushi_signatures_total") > total(after, "shirushi_signatures_total", signer="issuing-ca")
    assert total(after, "shirushi_crls_published_total", issuer="issuing-ca") >= 1
    assert 0 <= total(after, "shirushi_crl_age_seconds", issuer="issuing-ca", shard="0") < 3600
    assert total(after, "shirushi_crl_size_bytes", issuer="issuing-ca", shard="0") > 0
    assert total(after, "shirushi_crl_next_update_seconds", issuer="issuing-ca", shard="0") > 0
    assert total(after, "shirushi_ocsp_signer_expiry_seconds", issuer="issuing-ca") > 30 * 86400
    assert total(after, "shirushi_ocsp_oldest_response_validity_seconds") > 8 * 3600  # BR 4.9.10 margin
    assert total(after, "shirushi_presign_lag_seconds") == 0
    assert total(after, "shirushi_redis_reconnects_total") >= 1
    assert status == 200


def test_promtool_accepts_the_exposition(site: Site) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed"
    status, body = http(site.metrics_url + "/metrics")
    assert status == 200
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_real_prometheus_scrapes_it(site: Site, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus (Debian package prometheus) is needed"
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: shirushi\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{site.metrics_port}']\n"
    )
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_port(port, timeout=60)
        # The port opens before the TSDB is loaded; queries answer 503 until /-/ready says 200.
        wait_for(lambda: http(f"http://127.0.0.1:{port}/-/ready")[0] == 200, timeout=60)

        def query(expr: str) -> list[Any]:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            status, body = http(url)
            assert status == 200, body
            return list(json.loads(body)["data"]["result"])

        def scraped(expr: str, at_least: float) -> bool:
            return any(float(r["value"][1]) >= at_least for r in query(expr))

        wait_for(lambda: scraped('up{job="shirushi"}', 1), timeout=60)
        cert, issuer = issue(site, "scraped.example.jp")
        ask(site, cert, issuer)
        first = sum(float(r["value"][1]) for r in query("sum(shirushi_ocsp_requests_total)"))
        for _ in range(5):
            ask(site, cert, issuer)
        wait_for(lambda: scraped("sum(shirushi_ocsp_requests_total)", first + 5), timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_live_signing_is_counted(site: Site) -> None:
    """A response missing from Redis is signed on the live path, and counted by outcome."""
    import redis

    from shirushi.asn1.keys import issuer_id
    from shirushi.cache import records

    cert, issuer = issue(site, "live.example.jp")
    client = redis.Redis(unix_socket_path=str(site.data / "redis.sock"))
    try:
        wait_for(lambda: client.exists(records.response_key(issuer_id(issuer), "sha1", cert.serial_number)) == 1)
        client.delete(*(records.response_key(issuer_id(issuer), alg, cert.serial_number) for alg in ("sha1", "sha256")))
    finally:
        client.close()
    before = total(samples(site), "shirushi_live_sign_requests_total", outcome="signed")
    assert ask(site, cert, issuer) == ocsp.OCSPCertStatus.GOOD
    wait_for(lambda: total(samples(site), "shirushi_live_sign_requests_total", outcome="signed") >= before + 1)
