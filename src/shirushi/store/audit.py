"""Appending to the audit log (policy 5.4) inside the caller's transaction. Does database I/O.

Every issuance, revocation, key block and CRL appends here in the transaction that makes it; the
migrations add triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.engine import Connection

from shirushi.store import schema
from shirushi.store.records import serial_column, utc


def audit_values(
    at: dt.datetime, action: str, issuer_id: str | None, serial: int | None, detail: dict[str, Any]
) -> dict[str, Any]:
    """One audit row's column values."""
    return {
        "at": utc(at),
        "action": action,
        "issuer_id": issuer_id,
        "serial": None if serial is None else serial_column(serial),
        "detail": json.dumps(detail, sort_keys=True, default=str),
    }


def append_audit(
    conn: Connection, at: dt.datetime, action: str, issuer_id: str | None, serial: int | None, detail: dict[str, Any]
) -> None:
    conn.execute(schema.audit.insert().values(**audit_values(at, action, issuer_id, serial, detail)))
