"""What the store hands out (frozen dataclasses) and how their values are kept in rows. No I/O.

Serials are ints outside the store; in the tables they are lowercase hex without leading zeros
(`schema.py`), converted here only. Times are aware UTC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

UTC = dt.UTC


def serial_column(serial: int) -> str:
    """A serial as the tables keep it."""
    return format(serial, "x")


def serial_value(text: str) -> int:
    """A serial as the tables keep it, back to its int."""
    return int(text, 16)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def utc(t: dt.datetime) -> dt.datetime:
    # Aware UTC: PostgreSQL stores it as timestamptz; SQLite (no zone type) keeps the UTC wall
    # time, which `aware` restores on the way back.
    return t.astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class CertificateRecord:
    issuer_id: str
    serial: int
    der: bytes
    subject: str
    dns_names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    spki_sha256: str
    kind: str = "server"  # "server" | "ocsp-signer" | "ca"
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    crl_shown_after_expiry: bool = False
    crl_shard: int = 0  # the CRL its CRL Distribution Point names (crl/shards.py)


def certificate_record(row: Any) -> CertificateRecord:
    return CertificateRecord(
        issuer_id=row.issuer_id,
        serial=serial_value(row.serial),
        der=bytes(row.der),
        subject=row.subject,
        dns_names=tuple(row.dns_names.split()),
        not_before=aware(row.not_before),  # type: ignore[arg-type]
        not_after=aware(row.not_after),  # type: ignore[arg-type]
        spki_sha256=row.spki_sha256,
        kind=row.kind,
        revoked_at=aware(row.revoked_at),
        revocation_reason=row.revocation_reason,
        crl_shown_after_expiry=bool(row.crl_shown_after_expiry),
        crl_shard=int(row.crl_shard),
    )


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """What presigning needs of one certificate."""

    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    reason: str | None
    status_version: int = 0


def status_row(r: Any) -> StatusRow:
    return StatusRow(
        serial_value(r.serial),
        aware(r.not_after),  # type: ignore[arg-type]
        aware(r.revoked_at),
        r.revocation_reason,
        int(r.status_version),
    )


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    """One piece of follow-up work (see `schema.outbox`)."""

    id: int
    kind: Literal["ocsp", "crl"]
    issuer_id: str
    serial: int | None  # the certificate: for OCSP work, and the revoked one on CRL work


def outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(int(r.id), r.kind, r.issuer_id, None if r.serial is None else serial_value(r.serial))


@dataclasses.dataclass(frozen=True)
class IssuerRow:
    id: str
    name: str
    subject: str
    certificate: bytes
    outside: bool = False  # registered with `issuer add`: no key here (migration 0004)
    crl_number: int | None = None  # the last CRL imported from an outside CA
    crl_this_update: dt.datetime | None = None


def issuer_row(r: Any) -> IssuerRow:
    number = getattr(r, "crl_number", None)
    return IssuerRow(
        r.id,
        r.name,
        r.subject,
        bytes(r.certificate),
        bool(getattr(r, "outside", False)),
        None if number is None else int(number),
        aware(getattr(r, "crl_this_update", None)),
    )


@dataclasses.dataclass(frozen=True)
class CRLRow:
    """One published CRL as recorded (RFC 5280 5.2.3 number, its validity)."""

    number: int
    this_update: dt.datetime
    next_update: dt.datetime | None
    scheduled: bool
    entries: int | None


def crl_row(r: Any) -> CRLRow:
    return CRLRow(
        int(r.number),
        aware(r.this_update),  # type: ignore[arg-type]
        aware(r.next_update),
        bool(r.scheduled),
        r.entries,
    )
