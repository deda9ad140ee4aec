"""The presigner against a real Redis: issuance, full load, 24 h refresh, expiry, signer lifetime."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from shirushi import config
from shirushi.backend import Backend
from shirushi.ca.ocsp_signer import renew_ocsp_signer_if_due
from shirushi.cache import records
from shirushi.cache.writer import due_key
from shirushi.clock import FrozenClock
from shirushi.errors import StateError
from shirushi.presign import planner
from support.pki import make_csr

T0 = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


@pytest.fixture
def backend(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_PRESIGN__WORKERS": "1",
        },
    )
    b = Backend(settings, FrozenClock(T0))
    b.init()
    yield b
    b.close()


def stored(b: Backend, serial: int, alg: str) -> records.Record:
    issuer = b.presigner.context().issuer_id
    value = b.redis.get(records.response_key(issuer, alg, serial))
    assert isinstance(value, bytes), f"no {alg} response for {serial:x}"
    record = records.unpack(value)
    assert record is not None
    return record


def test_issuance_presigns_both_certid_algorithms(backend: Backend) -> None:
    issued = backend.authority.issue(make_csr())
    assert issued.warnings == []
    serial = issued.certificate.serial_number
    for alg, hash_cls in (("sha1", "SHA1"), ("sha256", "SHA256")):
        record = stored(backend, serial, alg)
        response = ocsp.load_der_ocsp_response(record.der)
        assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == serial
        assert type(response.hash_algorithm).__name__ == hash_cls
        assert response.this_update_utc == T0  # producedAt is the real signing time
        assert response.next_update_utc == T0 + 96 * H
        assert record.this_update == int(T0.timestamp())
        assert record.next_update == int((T0 + 96 * H).timestamp())
        assert T0 + 21 * H <= dt.datetime.fromtimestamp(record.refresh_by, dt.UTC) <= T0 + 24 * H
        assert len(response.certificates) == 1
        assert response.responder_key_hash is not None and response.responder_name is None
    issuer = backend.presigner.context().issuer_id
    ttl = backend.redis.ttl(records.response_key(issuer, "sha1", serial))
    # TTL = nextUpdate - now, measured against the frozen clock.
    assert ttl == 96 * 3600
    # No outbox work left behind for this certificate.
    assert [w for w in backend.store.outbox.pending() if w.serial == serial] == []


def test_issuance_with_redis_down_leaves_outbox_work(tmp_path: Path) -> None:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
            "SHIRUSHI_REDIS__URL": f"unix://{tmp_path}/no.sock",
            "SHIRUSHI_REDIS__TIMEOUT": "0.5",
        },
    )
    b = Backend(settings, FrozenClock(T0))
    b.init()
    issued = b.authority.issue(make_csr())
    assert issued.warnings and "not yet in Redis" in issued.warnings[0]
    pending = b.store.outbox.pending()
    serial = issued.certificate.serial_number
    assert [(w.kind, w.serial) for w in pending if w.serial == serial] == [("ocsp", serial)]
    b.close()


def test_full_load_marks_complete_and_refresh_resigns_when_due(backend: Backend) -> None:
    serials = [backend.authority.issue(make_csr()).certificate.serial_number for _ in range(3)]
    backend.redis.flushall()
    assert backend.presigner.ensure_complete() == 4  # three leaves and the OCSP signer certificate
    assert backend.presigner.ensure_complete() is None
    issuer = backend.presigner.context().issuer_id
    assert backend.redis.exists(records.complete_key(issuer))
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(12 * H)
    assert backend.presigner.refresh_due() == 0
    clock.advance(12 * H)  # 24 h after signing: everything is due (jitter only moves it earlier)
    assert backend.presigner.refresh_due() == 4
    for serial in serials:
        response = ocsp.load_der_ocsp_response(stored(backend, serial, "sha256").der)
        assert response.this_update_utc == T0 + 24 * H
    # Refreshed every 24 h: a response never gets within 8 h of its nextUpdate (BR 4.9.10).
    for serial in serials:
        record = stored(backend, serial, "sha1")
        assert record.next_update - record.refresh_by >= 8 * 3600


def test_expired_certificates_are_no_longer_refreshed(backend: Backend) -> None:
    serial = backend.authority.issue(make_csr(), days=1).certificate.serial_number
    issuer = backend.presigner.context().issuer_id
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(25 * H)
    backend.presigner.refresh_due()
    assert backend.redis.zscore(due_key(issuer), format(serial, "x")) is None


def test_revoked_status_is_presigned_with_reason(backend: Backend) -> None:
    serial = backend.authority.issue(make_csr()).certificate.serial_number
    result = backend.revoker.revoke(serial, "keyCompromise")
    assert not result.pending
    response = ocsp.load_der_ocsp_response(stored(backend, serial, "sha1").der)
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason == x509.ReasonFlags.key_compromise
    assert response.revocation_time_utc == T0


def test_unspecified_reason_is_left_out(backend: Backend) -> None:
    serial = backend.authority.issue(make_csr()).certificate.serial_number
    backend.revoker.revoke(serial, "unspecified")
    response = ocsp.load_der_ocsp_response(stored(backend, serial, "sha256").der)
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None


@pytest.mark.parametrize("signer_key", ["rsa-2048", "ecdsa-p256"])
def test_parallel_signing_matches(tmp_path: Path, redis_url: str, signer_key: str) -> None:
    """Responses signed in the worker processes verify under the current signer certificate, for
    either key type. The ECDSA CA was RSA first, so both keys exist: a worker opening the other
    one would sign responses no client accepts."""
    environ = {
        "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
        "SHIRUSHI_REDIS__URL": redis_url,
        "SHIRUSHI_PRESIGN__WORKERS": "2",
        "SHIRUSHI_PRESIGN__BATCH": "5",
    }
    Backend(config.load(None, environ=environ), FrozenClock(T0)).init()
    settings = config.load(None, environ={**environ, "SHIRUSHI_OCSP__SIGNER_KEY": signer_key})
    b = Backend(settings, FrozenClock(T0))
    b.init()
    serials = [b.authority.issue(make_csr()).certificate.serial_number for _ in range(12)]
    b.redis.flushall()
    # The 12 and the OCSP signer certificates, one per key type certified (they have status too).
    assert b.presigner.full_load() == 12 + (1 if signer_key == "rsa-2048" else 2)
    signer = x509.load_pem_x509_certificate((settings.data_path / "certs" / "ocsp-signer.pem").read_bytes())
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey if signer_key == "rsa-2048" else ec.EllipticCurvePublicKey)
    for serial in serials:
        response = ocsp.load_der_ocsp_response(stored(b, serial, "sha256").der)
        algorithm = response.signature_hash_algorithm
        assert algorithm is not None
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
    b.close()


def test_window_never_outlives_the_signer() -> None:
    with pytest.raises(StateError, match="OCSP signer certificate expires"):
        planner.window(T0, validity=96 * H, interval=24 * H, signer_not_after=T0 + 95 * H)
    win = planner.window(T0, validity=96 * H, interval=90 * H, signer_not_after=T0 + 200 * H)
    assert win.next_update - win.due >= 8 * H


def test_signer_renewed_when_near_its_end(backend: Backend) -> None:
    before = x509.load_pem_x509_certificate((backend.settings.data_path / "certs" / "ocsp-signer.pem").read_bytes())
    assert renew_ocsp_signer_if_due(backend.settings, backend.store, backend.keys, backend.clock) is None
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.set(before.not_valid_after_utc - dt.timedelta(days=29))
    renewed = renew_ocsp_signer_if_due(backend.settings, backend.store, backend.keys, backend.clock)
    assert renewed is not None
    assert renewed.not_valid_after_utc > before.not_valid_after_utc
    assert renewed.public_key() == before.public_key()


def test_redis_unreachable_is_a_service_error(tmp_path: Path) -> None:
    client = redis.Redis(unix_socket_path=str(tmp_path / "none.sock"), socket_timeout=0.2)
    from shirushi.cache.writer import CacheWriter
    from shirushi.errors import ServiceError

    with pytest.raises(ServiceError, match="Redis"):
        CacheWriter(client).is_complete("x")


def test_a_worker_that_cannot_write_fails_the_full_load(tmp_path: Path, redis_url: str) -> None:
    """The worker processes write what they sign: Redis gone, the full load raises ServiceError
    in the parent (not a hang, not a completion marker over nothing)."""
    from shirushi.errors import ServiceError

    environ = {
        "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
        "SHIRUSHI_REDIS__URL": redis_url,
        "SHIRUSHI_PRESIGN__WORKERS": "2",
        "SHIRUSHI_PRESIGN__BATCH": "2",
    }
    b = Backend(config.load(None, environ=environ), FrozenClock(T0))
    b.init()
    for _ in range(4):
        b.authority.issue(make_csr())
    b.close()
    gone = {**environ, "SHIRUSHI_REDIS__URL": f"unix://{tmp_path / 'gone.sock'}", "SHIRUSHI_REDIS__TIMEOUT": "0.5"}
    b = Backend(config.load(None, environ=gone), FrozenClock(T0))
    with pytest.raises(ServiceError, match="Redis write failed"):
        b.presigner.full_load()
    b.close()


def test_stale_refresh_never_overwrites_a_revocation(backend: Backend) -> None:
    """A refresh that read "good" before a revocation committed writes after it: Redis keeps revoked."""
    from shirushi.store.records import StatusRow

    issued = backend.authority.issue(make_csr())
    serial = issued.certificate.serial_number
    stale = backend.store.statuses_of(backend.presigner.context().issuer_id, [serial])
    assert stale[0].status_version == 0 and stale[0].revoked_at is None
    backend.revoker.revoke(serial, "keyCompromise")
    backend.presigner.presign(stale)  # the late write of the stale refresh
    for alg in ("sha1", "sha256"):
        record = stored(backend, serial, alg)
        assert record.status_version == 1
        assert ocsp.load_der_ocsp_response(record.der).certificate_status == ocsp.OCSPCertStatus.REVOKED
    # Equal versions still refresh (the 24 h re-signing of an unchanged status).
    fresh = backend.store.statuses_of(backend.presigner.context().issuer_id, [serial])
    assert fresh == [StatusRow(serial, fresh[0].not_after, fresh[0].revoked_at, "keyCompromise", 1)]
    clock = backend.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(H)
    backend.presigner.presign(fresh)
    assert ocsp.load_der_ocsp_response(stored(backend, serial, "sha1").der).this_update_utc == T0 + H


def test_one_write_keeps_every_newer_record_it_meets(redis_url: str) -> None:
    """Records go to Redis many per script call: the version check holds for each one of them."""
    from shirushi.cache.writer import SCRIPT_KEYS, CacheWriter, Entry

    client = redis.Redis.from_url(redis_url)
    count = SCRIPT_KEYS * 2 + 5  # three calls, the last one short
    keys = [records.response_key("0123456789abcdef", "sha1", serial) for serial in range(1, count + 1)]
    newer = records.make_record(b"revoked", 1, 2, 3, status_version=7).pack()
    for key in keys[::9]:
        client.set(key, newer)
    older = records.make_record(b"good", 1, 2, 3, status_version=6).pack()
    CacheWriter(client).put("0123456789abcdef", [Entry(key, older, 600 + i) for i, key in enumerate(keys)], {})
    for i, key in enumerate(keys):
        if i % 9 == 0:
            assert client.get(key) == newer and client.ttl(key) == -1, i
        else:
            assert client.get(key) == older and 600 + i - 2 <= client.ttl(key) <= 600 + i, i


def test_redis_flush_is_refilled(backend: Backend) -> None:
    from shirushi.schedules import Scheduler

    serial = backend.authority.issue(make_csr()).certificate.serial_number
    backend.redis.flushall()
    Scheduler(backend).refresh_job()
    assert stored(backend, serial, "sha1").status_version == 0
