"""Atomic CRL publication, archived first (policy 4.9.8, 5.5.1)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from shirushi.crl import Entry, StaleCrlError, build_crl, publish
from shirushi.errors import ConflictError, InputError
from support.crl_pki import EPOCH, shared_pki


def make_crl(number: int, *, entries: int = 3, offset: int = 0) -> bytes:
    pki = shared_pki()
    this_update = EPOCH + dt.timedelta(seconds=number + offset)
    return build_crl(
        issuer=pki.issuing.cert,
        signer=pki.issuing.signer,
        number=number,
        this_update=this_update,
        next_update=this_update + dt.timedelta(hours=96),
        entries=[Entry(i + 1, EPOCH, "superseded") for i in range(entries)],
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class Archive:
    """The archive step as the CRL service passes it: records what it was given, or refuses."""

    def __init__(self, refuse: bool = False) -> None:
        self.kept: list[bytes] = []
        self.refuse = refuse

    def __call__(self, der: bytes) -> None:
        if self.refuse:
            raise ConflictError("archive refuses")
        self.kept.append(der)


def test_publish_archives_then_writes_the_crl(tmp_path: Path) -> None:
    der = make_crl(5)
    path = tmp_path / "repo" / "issuing-ca.crl"
    archive = Archive()
    publish(der, path=path, number=5, archive=archive)
    assert path.read_bytes() == der and archive.kept == [der]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(path.parent) == []
    later = make_crl(6)
    publish(later, path=path, number=6, archive=archive)
    assert path.read_bytes() == later and archive.kept == [der, later]


def test_publishing_the_same_crl_again_is_a_harmless_retry(tmp_path: Path) -> None:
    der = make_crl(8)
    for _ in range(2):
        publish(der, path=tmp_path / "ca.crl", number=8, archive=Archive())
    assert (tmp_path / "ca.crl").read_bytes() == der


def test_nothing_unarchived_goes_live(tmp_path: Path) -> None:
    with pytest.raises(ConflictError):
        publish(make_crl(9), path=tmp_path / "ca.crl", number=9, archive=Archive(refuse=True))
    assert not (tmp_path / "ca.crl").exists()


def test_older_crl_never_replaces_a_newer_one(tmp_path: Path) -> None:
    newer, older = make_crl(12), make_crl(11)
    publish(newer, path=tmp_path / "ca.crl", archive=Archive(), number=12)
    with pytest.raises(StaleCrlError):
        publish(older, path=tmp_path / "ca.crl", archive=Archive(), number=11)
    with pytest.raises(StaleCrlError):
        publish(make_crl(12, offset=5), path=tmp_path / "ca.crl", archive=Archive(), number=12)
    assert (tmp_path / "ca.crl").read_bytes() == newer


def test_number_must_match_the_crl(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cRLNumber is 4"):
        publish(make_crl(4), path=tmp_path / "ca.crl", archive=Archive(), number=40)
    with pytest.raises(InputError, match="not a DER CRL"):
        publish(b"\x30\x03\x02\x01\x01", path=tmp_path / "ca.crl", archive=Archive(), number=1)
    assert not (tmp_path / "ca.crl").exists()


def test_failed_write_leaves_the_old_crl_and_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_crl(1)
    publish(old, path=tmp_path / "ca.crl", archive=Archive(), number=1)

    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        # Fault injection: the disk fails while the new CRL's temporary file is being synced
        # (the first fsync: the archive step is the caller's).
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        publish(make_crl(2), path=tmp_path / "ca.crl", archive=Archive(), number=2)
    assert calls["n"] == 1
    assert (tmp_path / "ca.crl").read_bytes() == old
    assert leftovers(tmp_path) == []


def test_readers_never_see_a_partial_crl(tmp_path: Path) -> None:
    """A reader polling the file while CRLs of about 1 MB are published sees only whole ones."""
    crls = [make_crl(n, entries=20_000) for n in range(1, 16)]
    digests = {hashlib.sha256(der).digest() for der in crls}
    path = tmp_path / "ca.crl"
    publish(crls[0], path=path, archive=Archive(), number=1)
    done = threading.Event()
    reads: list[bytes] = []

    def reader() -> None:
        while not done.is_set():
            reads.append(path.read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for number, der in enumerate(crls[1:], start=2):
            publish(der, path=path, archive=Archive(), number=number)
    finally:
        done.set()
        thread.join()
    assert len(reads) > 1
    for data in reads:
        assert hashlib.sha256(data).digest() in digests, f"partial CRL of {len(data)} bytes"
    assert len(x509.load_der_x509_crl(path.read_bytes())) == 20_000


@pytest.mark.parametrize(("number", "entries"), [(1, 0), (127, 1), (128, 300), (40_000, 40_000)])
def test_crl_number_walk_agrees_with_pyca(number: int, entries: int) -> None:
    from shirushi.crl.publish import crl_number

    der = make_crl(number, entries=entries)
    parsed = x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber).value
    assert crl_number(der) == parsed.crl_number == number


@pytest.mark.parametrize("cut", [1, 2, 10, 200, -300, -1])
def test_crl_number_of_damaged_der_is_an_input_error(cut: int) -> None:
    from shirushi.crl.publish import crl_number

    der = make_crl(9, entries=5)
    with pytest.raises(InputError):
        crl_number(der[:cut])
    with pytest.raises(InputError):
        crl_number(b"\x30\x03\x02\x01\x01")
