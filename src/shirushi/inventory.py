"""`shirushi show SERIAL` and `shirushi list`: the operator's view of the certificate records.

Read-only: opens the database (never creates it) and prints; status is what the system of record
says at the given time (good, revoked, or expired), the same facts OCSP and the CRL are made from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from shirushi.config import Settings
from shirushi.errors import InputError, NotFoundError
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord, Store

MAX_EXPIRING_DAYS = 3660  # ten years: more is a typo, not a question


def status(record: CertificateRecord, now: dt.datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "expired" if record.not_after <= now else "good"


def _time(t: dt.datetime | None) -> str:
    return "-" if t is None else f"{t.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def parse_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise InputError(f"--expiring {text!r} is not a whole number of days") from None
    if not 0 <= days <= MAX_EXPIRING_DAYS:
        raise InputError(f"--expiring must be between 0 and {MAX_EXPIRING_DAYS} days")
    return days


def describe(record: CertificateRecord, issuer: str, now: dt.datetime) -> list[str]:
    """One certificate's record and status, one `field: value` per line."""
    fields = [
        ("serial", serial_text(record.serial)),
        ("status", status(record, now)),
        ("kind", record.kind),
        ("issuer", issuer),
        ("subject", record.subject),
        ("dns_names", " ".join(record.dns_names) or "-"),
        ("not_before", _time(record.not_before)),
        ("not_after", _time(record.not_after)),
        ("revoked_at", _time(record.revoked_at)),
        ("reason", record.revocation_reason or "-"),
        ("spki_sha256", record.spki_sha256),
    ]
    return [f"{name + ':':<13}{value}" for name, value in fields]


def table(records: Iterable[CertificateRecord], now: dt.datetime) -> Iterable[str]:
    """A fixed-width table (serials are at most 40 hex digits), streamed row by row."""
    row = "{:<40}  {:<7}  {:<20}  {:<11}  {}"
    yield row.format("SERIAL", "STATUS", "NOT_AFTER", "KIND", "NAMES")
    for r in records:
        names = " ".join(r.dns_names) or r.subject
        yield row.format(serial_text(r.serial), status(r, now), _time(r.not_after), r.kind, names)


def show(settings: Settings, serial: int, now: dt.datetime, say: Callable[[str], None] = print) -> int:
    store = Store.open(settings.database_url, create=False)
    try:
        record = store.certificate(serial)
        if record is None:
            raise NotFoundError(f"no certificate with serial {serial_text(serial)} was issued by this CA")
        names = {i.id: f"{i.name} ({i.subject})" for i in store.issuers()}
        for line in describe(record, names.get(record.issuer_id, record.issuer_id), now):
            say(line)
    finally:
        store.close()
    return 0


def list_certificates(
    settings: Settings, now: dt.datetime, *, revoked: bool, expiring: str | None, say: Callable[[str], None] = print
) -> int:
    before = now + dt.timedelta(days=parse_days(expiring)) if expiring is not None else None
    store = Store.open(settings.database_url, create=False)
    try:
        lines = 0
        for line in table(store.listing(revoked=revoked, expiring_before=before, now=now), now):
            say(line)
            lines += 1
    finally:
        store.close()
    if lines == 1:  # the header alone
        say("(no certificate matches)")
    return 0
