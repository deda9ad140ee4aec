"""Live signing and the asked-first refill, in process against a real Redis and store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509 import ocsp

from shirushi import config
from shirushi.backend import Backend
from shirushi.cache import livewire, records
from shirushi.cache.writer import Entry
from shirushi.clock import FrozenClock
from shirushi.presign.live import Asked, LiveSigner, TokenBucket
from support.seed import seed_certificates

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def backend(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(tmp_path / "data"),
            "SHIRUSHI_REDIS__URL": redis_url,
            "SHIRUSHI_PRESIGN__WORKERS": "1",
            "SHIRUSHI_PRESIGN__BATCH": "10",
        },
    )
    b = Backend(settings, FrozenClock(T0))
    b.init()
    yield b
    b.close()


def key(b: Backend, alg: str, serial: int) -> bytes:
    return records.response_key(b.presigner.context().issuer_id, alg, serial).encode()


def live_signer(b: Backend, rate: float = 1000, burst: float = 1000) -> LiveSigner:
    clock = [0.0]
    return LiveSigner(b.presigner, TokenBucket(rate, burst, 0.0), Asked(), lambda: clock[0])


def test_known_serial_is_signed_once_for_the_asked_algorithm(backend: Backend) -> None:
    (serial,) = seed_certificates(backend.settings.data_path, 1)
    signer = live_signer(backend)
    status, value = signer.answer(key(backend, "sha256", serial))
    assert status == livewire.OK
    record = records.unpack(value)
    assert record is not None
    response = ocsp.load_der_ocsp_response(record.der)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD and response.serial_number == serial
    assert backend.redis.get(key(backend, "sha256", serial)) == value
    assert backend.redis.get(key(backend, "sha1", serial)) is None  # nobody asked for it yet
    # Asked again: Redis has it, no second signature.
    assert signer.answer(key(backend, "sha256", serial)) == (livewire.OK, value)
    assert signer.counts.signed == 1


def test_unknown_serial_and_foreign_keys_cost_no_signature(backend: Backend) -> None:
    seed_certificates(backend.settings.data_path, 3)
    signer = live_signer(backend, rate=1, burst=1)
    assert signer.answer(key(backend, "sha1", 0x1234567)) == (livewire.UNKNOWN, b"")
    assert signer.answer(records.response_key("fedcba9876543210", "sha1", 5).encode()) == (livewire.NOT_MINE, b"")
    assert signer.answer(b"shirushi:ocsp:junk") == (livewire.NOT_MINE, b"")
    assert signer.counts.signed == 0 and signer.bucket.tokens == 1.0  # the budget is untouched
    assert backend.redis.keys("shirushi:ocsp:*}:sha1") == []


def test_over_budget_is_try_later_and_remembered(backend: Backend) -> None:
    a, b = seed_certificates(backend.settings.data_path, 2)
    signer = live_signer(backend, rate=1, burst=1)
    assert signer.answer(key(backend, "sha1", a))[0] == livewire.OK
    assert signer.answer(key(backend, "sha1", b)) == (livewire.TRY_LATER, b"")
    assert signer.asked.take(10) == [b]


def test_live_signing_never_replaces_a_newer_revoked_record(backend: Backend) -> None:
    (serial,) = seed_certificates(backend.settings.data_path, 1)
    revoked = records.make_record(b"revoked response", 1, 2, 3, status_version=5)
    backend.redis.set(key(backend, "sha1", serial), revoked.pack())
    backend.redis.delete(key(backend, "sha1", serial))  # a miss, then the revocation lands...
    signer = live_signer(backend)
    real = signer.presigner.writer.put

    def racing_put(issuer: str, entries: Any, due: dict[int, int], **kw: Any) -> None:
        backend.redis.set(key(backend, "sha1", serial), revoked.pack())  # ...while we sign
        real(issuer, entries, due, **kw)

    signer.presigner.writer.put = racing_put  # type: ignore[method-assign]
    assert signer.answer(key(backend, "sha1", serial)) == (livewire.OK, revoked.pack())


def test_full_load_signs_asked_serials_first_and_once(backend: Backend) -> None:
    serials = seed_certificates(backend.settings.data_path, 45)
    asked = Asked()
    for serial in serials[-3:]:
        asked.add(serial)
    backend.presigner.asked = asked
    order: list[list[str]] = []
    real = backend.presigner.writer.put

    def put(issuer: str, entries: Iterable[Entry], due: dict[int, int], *, announce: bool = False) -> None:
        entries = list(entries)
        order.append([e.key for e in entries if e.key.endswith("}:sha1")])
        real(issuer, entries, due, announce=announce)

    backend.presigner.writer.put = put  # type: ignore[method-assign]
    count = backend.presigner.full_load()  # the seeded ones and the OCSP signer's certificate
    first = {k.rsplit(":", 1)[0].split(":")[-1].rstrip("}") for k in order[0]}
    assert first == {format(s, "x") for s in serials[-3:]}
    flat = [k.rsplit(":", 1)[0].split(":")[-1].rstrip("}") for batch in order for k in batch]
    assert len(flat) == len(set(flat)) == count  # each signed once: the scan skips the asked ones
    assert {format(s, "x") for s in serials} <= set(flat)
