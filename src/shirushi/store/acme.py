"""Domain validation results and the ACME server's objects and nonces. Does database I/O.

Validation results are what every issuance door relies on (policy 3.2.7); ACME objects are JSON
documents (RFC 8555 7.1) with the few columns needed to find them; nonces are single use: taking
one deletes its row, so a replay finds nothing (RFC 8555 6.5).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.store import schema
from shirushi.store.audit import append_audit
from shirushi.store.records import aware, utc


@dataclasses.dataclass(frozen=True)
class DomainValidation:
    name: str
    method: str
    wildcard: bool
    validated_at: dt.datetime
    reuse_until: dt.datetime
    account: str | None


class ValidationRecords:
    """Successful domain validations, each reusable until its `reuse_until`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, v: DomainValidation, audit: dict[str, Any]) -> None:
        """Record a success and its audit entry in one transaction (policy 5.4.1)."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.domain_validations.insert().values(
                    name=v.name,
                    method=v.method,
                    wildcard=v.wildcard,
                    validated_at=utc(v.validated_at),
                    reuse_until=utc(v.reuse_until),
                    account=v.account,
                )
            )
            append_audit(conn, v.validated_at, "domain-validation", None, None, audit)

    def current(self, name: str, now: dt.datetime) -> list[DomainValidation]:
        """Validations of `name` still inside their reuse period, newest first."""
        t = schema.domain_validations
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.name == name, t.c.reuse_until > utc(now)).order_by(t.c.validated_at.desc())
            ).all()
        return [
            DomainValidation(r.name, r.method, bool(r.wildcard), aware(r.validated_at), aware(r.reuse_until), r.account)  # type: ignore[arg-type]
            for r in rows
        ]


def _utc(value: dt.datetime) -> dt.datetime:
    made = aware(value)
    assert made is not None  # created_at is NOT NULL
    return made


def audit_event(engine: Engine, at: dt.datetime, action: str, detail: dict[str, Any]) -> None:
    """An audit entry of its own (a failed validation attempt, a refused CAA check)."""
    with engine.begin() as conn:
        append_audit(conn, at, action, None, None, detail)


class ACMEObjects:
    """RFC 8555 resources as JSON documents keyed by their random ids."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(
        self,
        kind: str,
        id: str,
        data: dict[str, Any],
        at: dt.datetime,
        *,
        owner: str | None = None,
        lookup: str | None = None,
    ) -> None:
        t = schema.acme_objects
        text = json.dumps(data, sort_keys=True)
        with self.engine.begin() as conn:
            done = conn.execute(t.update().where(t.c.id == id, t.c.kind == kind).values(data=text)).rowcount
            if not done:
                conn.execute(
                    t.insert().values(id=id, kind=kind, owner=owner, lookup=lookup, data=text, created_at=utc(at))
                )

    def swap(self, kind: str, id: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Replace `old` by `new` only if nobody changed it in between (a challenge is answered once)."""
        t = schema.acme_objects
        with self.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.id == id, t.c.kind == kind, t.c.data == json.dumps(old, sort_keys=True))
                .values(data=json.dumps(new, sort_keys=True))
            ).rowcount
        return bool(done)

    def set_lookup(self, kind: str, id: str, lookup: str) -> None:
        t = schema.acme_objects
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == id, t.c.kind == kind).values(lookup=lookup))

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        t = schema.acme_objects
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.data).where(t.c.id == id, t.c.kind == kind)).first()
        return None if row is None else dict(json.loads(row.data))

    def find(self, kind: str, lookup: str) -> tuple[str, dict[str, Any]] | None:
        t = schema.acme_objects
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.id, t.c.data).where(t.c.kind == kind, t.c.lookup == lookup)).first()
        return None if row is None else (row.id, dict(json.loads(row.data)))

    def created_since(self, kind: str, owner: str, since: dt.datetime) -> list[dt.datetime]:
        """When each of `owner`'s objects of `kind` made after `since` was made, oldest first."""
        t = schema.acme_objects
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.created_at)
                .where(t.c.kind == kind, t.c.owner == owner, t.c.created_at > utc(since))
                .order_by(t.c.created_at)
            ).all()
        return [_utc(r.created_at) for r in rows]

    def owned(self, kind: str, owner: str, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        t = schema.acme_objects
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.id, t.c.data)
                .where(t.c.kind == kind, t.c.owner == owner)
                .order_by(t.c.created_at)
                .limit(limit)
            ).all()
        return [(r.id, dict(json.loads(r.data))) for r in rows]

    def owner(self, kind: str, id: str) -> str | None:
        t = schema.acme_objects
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.owner).where(t.c.id == id, t.c.kind == kind)).first()
        return None if row is None else row.owner

    def certificates_for_name(self, name: str, since: dt.datetime) -> list[dt.datetime]:
        """When each certificate naming `name` issued after `since` was made, oldest first
        (the per-name rate limit)."""
        t = schema.certificates
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.dns_names, t.c.created_at)
                .where(t.c.created_at > utc(since), t.c.dns_names.contains(name))
                .order_by(t.c.created_at)
            ).all()
        return [_utc(r.created_at) for r in rows if name in r.dns_names.split()]

    # -- nonces ---------------------------------------------------------------------------

    def add_nonce(self, nonce: str, expires_at: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(schema.acme_nonces.insert().values(nonce=nonce, expires_at=utc(expires_at)))

    def take_nonce(self, nonce: str, now: dt.datetime) -> bool:
        """True once for a nonce we issued that has not expired; the row goes either way."""
        t = schema.acme_nonces
        with self.engine.begin() as conn:
            taken = conn.execute(t.delete().where(t.c.nonce == nonce, t.c.expires_at > utc(now))).rowcount
            conn.execute(t.delete().where(t.c.expires_at <= utc(now)))
        return bool(taken)
