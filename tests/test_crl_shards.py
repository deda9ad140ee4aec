"""Partitioned CRLs (`crl.shards`): shard at issuance, CDP and IDP, per-shard CRLs, `crl urls`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from shirushi import config
from shirushi.backend import Backend
from shirushi.clock import FrozenClock
from shirushi.crl.shards import crl_name, parse_crl_name, published_shards, shard_of
from support.crl_pki import lint_crl
from support.pki import cli_env, make_csr, run_cli

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def test_shard_names_round_trip() -> None:
    assert shard_of(12345, 1) == 0
    assert {shard_of(s, 4) for s in range(100)} == {1, 2, 3, 4}
    assert crl_name("issuing-ca", 0) == "issuing-ca" and crl_name("issuing-ca", 7) == "issuing-ca-7"
    assert parse_crl_name("issuing-ca-7") == ("issuing-ca", 7)
    assert parse_crl_name("issuing-ca") == ("issuing-ca", 0)
    assert parse_crl_name("root") == ("root", 0)
    assert parse_crl_name("issuing-ca-0") is None and parse_crl_name("../x") is None
    assert published_shards(1, 0) == [0] and published_shards(3, 0) == [0, 1, 2, 3]
    assert published_shards(2, 4) == [0, 1, 2, 3, 4]  # lowered: the shards in use stay published


def make_backend(data: Path, redis_url: str, shards: int) -> Backend:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(data),
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_PRESIGN__WORKERS": "1",
            "SHIRUSHI_CRL__SHARDS": str(shards),
        },
    )
    return Backend(settings, FrozenClock(T0))


@pytest.fixture
def sharded(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    b = make_backend(tmp_path / "data", redis_url, 4)
    b.init()
    yield b
    b.close()


def cdp(cert: x509.Certificate) -> str:
    point = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0]
    assert point.full_name is not None
    return str(point.full_name[0].value)


def number(b: Backend, shard: int) -> int:
    crl = b.crls.current("issuing-ca", shard)
    assert crl is not None
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def test_revocation_regenerates_only_its_shard(sharded: Backend, tmp_path: Path) -> None:
    b = sharded
    b.crls.generate_all("issuing-ca", scheduled=True)
    certs = [b.authority.issue(make_csr()).certificate for _ in range(6)]
    base = b.settings.repository.url
    for cert in certs:
        shard = cert.serial_number % 4 + 1
        assert cdp(cert) == f"{base}issuing-ca-{shard}.crl"
        assert b.store.certificate(cert.serial_number).crl_shard == shard  # type: ignore[union-attr]
    target = certs[0]
    shard = target.serial_number % 4 + 1
    before = {s: number(b, s) for s in range(5)}
    b.revoker.revoke(target.serial_number, "superseded")
    after = {s: number(b, s) for s in range(5)}
    assert {s for s in after if after[s] != before[s]} == {shard}
    crl = b.crls.current("issuing-ca", shard)
    assert crl is not None and crl.get_revoked_certificate_by_serial_number(target.serial_number) is not None
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_user_certs
    assert [str(n.value) for n in idp.value.full_name or []] == [cdp(target)]
    for s in range(5):
        other = b.crls.current("issuing-ca", s)
        assert other is not None
        if s != shard:
            assert other.get_revoked_certificate_by_serial_number(target.serial_number) is None


@pytest.mark.oracle
def test_every_shard_lints_clean(sharded: Backend, tmp_path: Path) -> None:
    b = sharded
    for _ in range(4):
        b.revoker.revoke(b.authority.issue(make_csr()).certificate.serial_number, "superseded")
    for published in b.crls.generate_all("issuing-ca", scheduled=True):
        result = lint_crl(published.path)
        assert result.returncode == 0, (published.path, result.stdout)


def test_crl_urls_and_raising_shards(tmp_path: Path, redis_url: str) -> None:
    """Certificates of shards=1 keep the full CRL's URL; raising shards adds URLs, drops none."""
    data = tmp_path / "data"
    one = make_backend(data, redis_url, 1)
    one.init()
    old = one.authority.issue(make_csr()).certificate
    one.close()
    base = one.settings.repository.url
    assert cdp(old) == f"{base}issuing-ca.crl"
    env = cli_env(data, SHIRUSHI_REDIS__URL=redis_url, SHIRUSHI_CRL__SHARDS="3")
    assert run_cli(["crl"], env).returncode == 0
    listed = run_cli(["crl", "urls"], env)
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split("\t") for line in listed.stdout.splitlines())
    shards = [f"{base}issuing-ca-{n}.crl" for n in (1, 2, 3)]
    assert json.loads(lines["issuing-ca"]) == [f"{base}issuing-ca.crl", *shards]
    assert json.loads(lines["root"]) == [f"{base}root.crl"]
    three = make_backend(data, redis_url, 3)
    try:
        three.revoker.revoke(old.serial_number, "superseded")
        full = three.crls.current("issuing-ca", 0)
        assert full is not None and full.get_revoked_certificate_by_serial_number(old.serial_number) is not None
    finally:
        three.close()


@pytest.mark.oracle
def test_openssl_verify_with_the_shard_the_certificate_names(sharded: Backend, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from support.crl_pki import openssl

    b = sharded
    revoked = b.authority.issue(make_csr()).certificate
    good = b.authority.issue(make_csr()).certificate
    b.revoker.revoke(revoked.serial_number, "superseded")
    b.crls.generate_all("issuing-ca", scheduled=True)
    hierarchy = b.authority.hierarchy()
    pem = serialization.Encoding.PEM
    (tmp_path / "chain.pem").write_bytes(hierarchy.root.public_bytes(pem) + hierarchy.issuing.public_bytes(pem))
    at = str(int((T0 + dt.timedelta(minutes=1)).timestamp()))
    for cert, ok in ((revoked, False), (good, True)):
        shard = cert.serial_number % 4 + 1
        crl = b.crls.current("issuing-ca", shard)
        assert crl is not None
        (tmp_path / "crl.pem").write_bytes(crl.public_bytes(pem))
        (tmp_path / "leaf.pem").write_bytes(cert.public_bytes(pem))
        result = openssl(
            "verify", "-attime", at, "-crl_check", "-CRLfile", tmp_path / "crl.pem",
            "-CAfile", tmp_path / "chain.pem", tmp_path / "leaf.pem",
        )  # fmt: skip
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        if not ok:
            assert "certificate revoked" in result.stdout + result.stderr
