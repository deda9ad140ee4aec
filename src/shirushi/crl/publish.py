"""Publish a signed CRL into the repository directory, archiving it first. Does file I/O.

Publication is atomic (policy 2.3, 4.9.8: a CRL is published the moment it is issued, and a
reader must never fetch half of one): `files.write_atomic` renames a fsynced temporary file onto
the final name. HTTP servers reading the file see either the old CRL or the new one.

The caller's `archive` step (policy 5.5.1: CRL issuance history is archived; `archive.py`) runs
before the CRL goes live, so nothing is ever published that is not archived; it refuses a
different CRL under an archived number (RFC 5280 5.2.3).

Concurrent publishers into one directory are serialised with `flock` on the directory, and a
CRL never replaces one with a higher CRL number (RFC 5280 5.2.3, 5.1.2.5: numbers increase and
relying parties should never see an older CRL after a newer one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from shirushi.asn1.der import read_tlv_within as _tlv
from shirushi.errors import ConflictError, InputError
from shirushi.files import write_atomic

# The repository is public (policy 2.1).
PUBLISHED_MODE = 0o644


class StaleCrlError(ConflictError):
    """The repository serves a CRL with a higher number, or different bytes with the same one."""


def publish(der: bytes, *, path: Path, number: int, archive: Callable[[bytes], object]) -> None:
    """Archive `der` (`archive(der)`), then atomically make it the CRL at `path`.

    `number` must be the cRLNumber inside `der`. Refuses (`StaleCrlError`) when `path` already
    holds a CRL with a higher number, or a different CRL with the same number; `archive` refuses
    a different CRL under an archived number. Publishing the same CRL twice is allowed, so a
    retry after a crash completes the job.
    """
    actual = crl_number(der)
    if actual != number:
        raise InputError(f"the CRL's cRLNumber is {actual}, not {number}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked_directory(path.parent):
        _check_not_stale(der, path, number)
        archive(der)
        write_atomic(path, der, PUBLISHED_MODE)


def crl_number(der: bytes) -> int:
    """The cRLNumber of a DER CRL (`InputError` when it is not a CRL or has no number).

    Read by walking the DER to the extensions, skipping the entries by their length: parsing a
    44 MB CRL (a million entries) in full to read one integer would cost tens of milliseconds
    on every revocation.
    """
    try:
        return _walk_crl_number(der)
    except (IndexError, ValueError) as exc:
        raise InputError(f"not a DER CRL with a cRLNumber: {exc}") from None


def _walk_crl_number(der: bytes) -> int:
    tag, start, end = _tlv(der, 0, len(der))
    if tag != 0x30 or end != len(der):
        raise ValueError("not a SEQUENCE")
    tag, pos, tbs_end = _tlv(der, start, end)  # TBSCertList
    if tag != 0x30:
        raise ValueError("no TBSCertList")
    while pos < tbs_end:
        tag, content, next_pos = _tlv(der, pos, tbs_end)
        if tag == 0xA0:  # crlExtensions
            _, ext_pos, ext_end = _tlv(der, content, next_pos)
            while ext_pos < ext_end:
                _, field, ext_next = _tlv(der, ext_pos, ext_end)
                _, oid_start, oid_end = _tlv(der, field, ext_next)
                if der[oid_start:oid_end] == b"\x55\x1d\x14":  # id-ce-cRLNumber
                    value_tag, value_start, value_end = _tlv(der, oid_end, ext_next)
                    if value_tag == 0x01:  # critical flag
                        value_tag, value_start, value_end = _tlv(der, value_end, ext_next)
                    tag, int_start, int_end = _tlv(der, value_start, value_end)
                    if value_tag != 0x04 or tag != 0x02:
                        raise ValueError("malformed cRLNumber")
                    return int.from_bytes(der[int_start:int_end], "big", signed=True)
                ext_pos = ext_next
        pos = next_pos
    raise ValueError("no cRLNumber extension")


def _check_not_stale(der: bytes, path: Path, number: int) -> None:
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        return
    try:
        current_number = crl_number(current)
    except InputError:
        # Whatever is there is not a valid CRL; replacing it can only help relying parties.
        return
    if current_number > number:
        raise StaleCrlError(f"{path} already serves CRL number {current_number} > {number}")
    if current_number == number and current != der:
        raise StaleCrlError(f"{path} serves a different CRL with the same number {number}")


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on `directory`."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last fd releases the lock
