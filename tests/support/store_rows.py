"""What the tests read and write of the store's tables directly: counts, the audit log. Does database I/O."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from shirushi.store import Store, schema


def count_certificates(store: Store, issuer_id: str) -> int:
    c = schema.certificates
    query = sa.select(sa.func.count()).select_from(c).where(c.c.issuer_id == issuer_id)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def audit_entries(store: Store, action: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(schema.audit).order_by(schema.audit.c.id)
    if action:
        query = query.where(schema.audit.c.action == action)
    with store.engine.connect() as conn:
        return [
            {
                "at": r.at,
                "action": r.action,
                "issuer_id": r.issuer_id,
                "serial": r.serial,
                "detail": json.loads(r.detail),
            }
            for r in conn.execute(query)
        ]


def add_audit(store: Store, at: dt.datetime, action: str, detail: dict[str, Any]) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            schema.audit.insert().values(at=at, action=action, detail=json.dumps(detail, sort_keys=True, default=str))
        )
