"""The backend's scrape-time gauges and the live path's counter, in process against a real Redis
and store: CRL age, entries and size for every shard (`crl.shards`), the time left on each OCSP
signer certificate (Shirushi's own and an outside CA's delegated one), and the live-sign
outcomes (signed, found, unknown, not_mine)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi import config
from shirushi.asn1.keys import issuer_id
from shirushi.backend import Backend
from shirushi.ca.hierarchy import ISSUING, ROOT
from shirushi.cache import records
from shirushi.clock import FrozenClock
from shirushi.metrics.registry import metrics
from shirushi.metrics.scrape import BackendCollector
from shirushi.presign.live import Asked, LiveSigner, TokenBucket
from shirushi.store.outside import add_issuer
from support.seed import seed_certificates

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def backend(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_CRL__SHARDS": "2",
            "SHIRUSHI_PRESIGN__WORKERS": "1",
        },
    )
    b = Backend(settings, FrozenClock(T0))
    b.init()
    yield b
    b.close()


def samples(backend: Backend) -> dict[str, dict[tuple[str, ...], float]]:
    """family name -> label values -> value"""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in BackendCollector(backend).collect():
        out[family.name] = {tuple(s.labels.values()): s.value for s in family.samples}
    return out


def outside_ca_with_signer(backend: Backend, days: int) -> None:
    """An outside CA "corp" whose delegated signer certificate ends in `days` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp CA")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )  # fmt: skip
    signer = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp OCSP Responder")]))
        .issuer_name(name).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(2).not_valid_before(T0 - dt.timedelta(hours=1)).not_valid_after(T0 + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    add_issuer(backend.store, issuer_id(ca), "corp", "CN=Corp CA", ca.public_bytes(serialization.Encoding.DER), T0)
    path = backend.settings.layout.outside_signer("corp")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(signer.public_bytes(serialization.Encoding.PEM))


def test_crl_gauges_for_every_shard(backend: Backend) -> None:
    assert backend.crls.shards(ISSUING) == [0, 1, 2]
    for shard in backend.crls.shards(ISSUING):
        backend.crls.generate(ISSUING, scheduled=True, shard=shard)
    backend.crls.generate(ROOT, scheduled=True)
    got = samples(backend)
    want = {(ISSUING, "0"), (ISSUING, "1"), (ISSUING, "2"), (ROOT, "0")}
    for family in ("shirushi_crl_age_seconds", "shirushi_crl_next_update_seconds", "shirushi_crl_size_bytes",
                   "shirushi_crl_entries"):  # fmt: skip
        assert set(got[family]) == want, family
    assert all(v == 0 for v in got["shirushi_crl_age_seconds"].values())  # the frozen clock: just made
    assert all(v > 100 for v in got["shirushi_crl_size_bytes"].values())
    assert all(v > 3600 for v in got["shirushi_crl_next_update_seconds"].values())


def test_signer_expiry_own_and_outside(backend: Backend) -> None:
    own = x509.load_der_x509_certificate(backend.presigner.context().signer_cert_der)
    outside_ca_with_signer(backend, days=10)
    got = samples(backend)["shirushi_ocsp_signer_expiry_seconds"]
    assert got == {
        (ISSUING, "false"): (own.not_valid_after_utc - T0).total_seconds(),
        ("corp", "true"): 10 * 86400,
    }


def count(outcome: str) -> float:
    value: Any = metrics().live_signing.labels(outcome)._value.get()
    return float(value)


def test_live_sign_outcomes_are_counted(backend: Backend) -> None:
    (serial,) = seed_certificates(backend.settings.data_path, 1)
    signer = LiveSigner(backend.presigner, TokenBucket(100, 100, 0.0), Asked(), lambda: 0.0)
    issuer = backend.presigner.context().issuer_id
    before = {o: count(o) for o in ("signed", "found", "unknown", "not_mine", "over_budget")}
    signer.answer(records.response_key(issuer, "sha1", serial).encode())
    signer.answer(records.response_key(issuer, "sha1", serial).encode())  # in Redis now
    signer.answer(records.response_key(issuer, "sha1", 0x7777777).encode())
    signer.answer(records.response_key("fedcba9876543210", "sha1", 5).encode())
    after = {o: count(o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "signed": 1, "found": 1, "unknown": 1, "not_mine": 1, "over_budget": 0,
    }  # fmt: skip
