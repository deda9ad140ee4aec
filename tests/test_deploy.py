"""The deployment files in deploy/: checked by the tools that read them (no Docker engine here).

- compose.yaml: YAML, the Compose specification's JSON schema (check-jsonschema's copy), and the
  files it mounts exist; the configurations it mounts load with Shirushi's own validation;
- prometheus.yml and alerts.yml: `promtool check config` / `check rules`;
- the systemd units: `systemd-analyze verify` (where systemd is installed);
- the Grafana dashboard: every metric it queries is in a real `serve`'s /metrics output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from shirushi import config
from support.http_api import call
from support.pki import make_csr, split_pem
from support.serving import Site

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_has_the_fleet_and_its_files() -> None:
    services = _compose()["services"]
    assert {
        "redis-primary",
        "redis-replica-1",
        "redis-replica-2",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "postgres",
        "backend",
        "responder-1",
        "responder-2",
        "prometheus",
    } <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), (name, source)
    assert "env_file" not in services["responder-1"] or services["responder-1"]["env_file"] == []
    # The two responders listen on distinct host ports.
    assert services["responder-1"]["ports"] != services["responder-2"]["ports"]


@pytest.mark.parametrize("name", ["backend.toml", "responder.toml"])
def test_compose_configurations_load(name: str) -> None:
    settings = config.load(str(DEPLOY / "config" / name), environ={})
    assert settings.redis.mode == "sentinel" and len(settings.redis.nodes) == 3
    assert settings.metrics.listen.endswith(":9108")


@pytest.mark.oracle
def test_compose_matches_the_compose_schema() -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.oracle
def test_prometheus_configuration_and_alerts() -> None:
    for args in (["check", "config"], ["check", "rules"]):
        path = DEPLOY / "prometheus" / ("prometheus.yml" if args[1] == "config" else "alerts.yml")
        result = subprocess.run(["promtool", *args, str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    scraped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scraped["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"backend:9108", "responder-1:9108", "responder-2:9108"}


@pytest.mark.oracle
@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian package systemd)"
)
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["shirushi-backend.service", "shirushi-responder.service"]
    shirushi = Path(sys.executable).parent / "shirushi"  # verify checks that ExecStart exists
    for unit in units:
        text = unit.read_text()
        assert "/opt/shirushi/bin/shirushi " in text
        (tmp_path / unit.name).write_text(text.replace("/opt/shirushi/bin/shirushi", str(shirushi)))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    # verify exits 0 on ignored lines too: they are reported on stderr, which must stay empty.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def dashboard_metrics() -> set[str]:
    doc = json.loads((DEPLOY / "grafana" / "shirushi.json").read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    assert exprs and all(exprs)
    return {name for e in exprs for name in re.findall(r"\bshirushi_[a-z0-9_]+", e)}


def _sample_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.e2e
def test_dashboard_queries_only_metrics_that_exist(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    site = Site(tmp_path, SHIRUSHI_API__TOKEN="t")
    assert site.cli("init").returncode == 0
    with site.serving():
        status, body, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token="t")
        assert status == 201, body
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        issuer = split_pem(site.cli("ca-certs").stdout)[0]
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        der = request.public_bytes(serialization.Encoding.DER)
        for _ in range(2):  # a miss, then a hit of the in-process cache
            post = urllib.request.Request(site.ocsp_url, data=der, headers={"Content-Type": "application/ocsp-request"})
            with urllib.request.urlopen(post, timeout=10) as resp:
                assert resp.status == 200
        status, body, _ = call(
            site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "superseded"}, token="t"
        )
        assert status == 200, body
        names: set[str] = set()
        for _ in range(20):  # the responder workers add their counts a few times a second
            with urllib.request.urlopen(site.metrics_url + "/metrics", timeout=10) as resp:
                names = _sample_names(resp.read().decode())
            if dashboard_metrics() <= names:
                break
            time.sleep(0.5)
    missing = dashboard_metrics() - names
    assert not missing, sorted(missing)
