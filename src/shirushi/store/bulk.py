"""Bulk reads and the one-transaction bulk revocation (mass revocation events). Does database I/O.

A batch of up to 10,000 revocations is one transaction: every status change, its two outbox rows
(OCSP, CRL) and its audit entry commit together or not at all, so a crash part-way leaves either
the whole batch or none of it. Outbox and audit rows go in as one multi-row insert each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from shirushi.store import schema
from shirushi.store.audit import audit_values
from shirushi.store.database import CHUNK
from shirushi.store.outbox import outbox_values
from shirushi.store.records import CertificateRecord, certificate_record, serial_column, utc
from shirushi.store.store import Store


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One revocation of a batch, decided by the use case."""

    record: CertificateRecord
    reason: str
    revoked_at: dt.datetime
    audit: dict[str, Any]
    replace: bool = False  # BR 7.2.2: a key compromise updates an earlier revocation


def certificates_by_serial(store: Store, serials: Sequence[int]) -> dict[int, list[CertificateRecord]]:
    """Every certificate with one of these serials, under any issuer (unknown serials absent)."""
    c = schema.certificates
    found: dict[int, list[CertificateRecord]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(serials), CHUNK):
            chunk = [serial_column(s) for s in serials[i : i + CHUNK]]
            for row in conn.execute(sa.select(c).where(c.c.serial.in_(chunk))):
                record = certificate_record(row)
                found.setdefault(record.serial, []).append(record)
    return found


def revoke_batch(store: Store, items: Sequence[BatchItem], at: dt.datetime) -> list[CertificateRecord]:
    """Record these revocations in one transaction; return those made.

    An item whose certificate was revoked meanwhile by someone else (and is not a replacement)
    is left out of the result rather than failing the batch.
    """
    c = schema.certificates
    done: list[CertificateRecord] = []
    with store.engine.begin() as conn:
        for item in items:
            condition = [c.c.issuer_id == item.record.issuer_id, c.c.serial == serial_column(item.record.serial)]
            if not item.replace:
                condition.append(c.c.revoked_at.is_(None))
            result = conn.execute(
                c.update()
                .where(*condition)
                .values(
                    revoked_at=utc(item.revoked_at),
                    revocation_reason=item.reason,
                    status_version=c.c.status_version + 1,
                )
            )
            if result.rowcount == 1:
                done.append(dataclasses.replace(item.record, revoked_at=item.revoked_at, revocation_reason=item.reason))
        if done:
            outbox = [outbox_values(kind, r.issuer_id, r.serial, at) for r in done for kind in ("ocsp", "crl")]
            conn.execute(schema.outbox.insert(), outbox)
            by_serial = {(i.record.issuer_id, i.record.serial): i.audit for i in items}
            audit = [
                audit_values(at, "revoke", r.issuer_id, r.serial, by_serial[(r.issuer_id, r.serial)]) for r in done
            ]
            conn.execute(schema.audit.insert(), audit)
    return done
