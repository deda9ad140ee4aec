"""The Store: the system of record's certificates, issuers, revocations and blocked keys, with its
outbox (`outbox.py`), CRL record (`crls.py`), problem reports (`reports.py`) and key-compromise
challenges (`challenges.py`) over the same database. Does database I/O.

Every change that must be followed by other work (re-signing, a new CRL) writes an outbox row in
the same transaction, and every change appends to the audit log (`audit.py`) in that transaction
too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shirushi.errors import ConflictError
from shirushi.serials import serial_text
from shirushi.store import database, outbox, schema
from shirushi.store.acme import ACMEObjects, ValidationRecords
from shirushi.store.audit import append_audit
from shirushi.store.challenges import KeyChallenges
from shirushi.store.crls import CRLs
from shirushi.store.database import CHUNK
from shirushi.store.records import (
    CertificateRecord,
    IssuerRow,
    StatusRow,
    certificate_record,
    issuer_row,
    serial_column,
    status_row,
    utc,
)
from shirushi.store.reports import ProblemReports


class Store:
    """System of record over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.outbox = outbox.Outbox(engine)
        self.crls = CRLs(engine)
        self.reports = ProblemReports(engine)
        self.challenges = KeyChallenges(engine)
        self.validations = ValidationRecords(engine)
        self.acme = ACMEObjects(engine)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Open and migrate the database; with `create` False a missing SQLite file is an error."""
        engine = database.connect(url, create=create)
        database.migrate(engine)
        return cls(engine)

    def ping(self) -> None:
        """Raise unless the database answers a trivial query (readiness)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    def audit(self, at: dt.datetime, action: str, detail: dict[str, Any], serial: int | None = None) -> None:
        """Append an audit entry that goes with no other change (an API call, policy 5.4.1)."""
        with self.engine.begin() as conn:
            append_audit(conn, at, action, None, serial, detail)

    # -- issuers --------------------------------------------------------------------------

    def add_issuer(self, id: str, name: str, subject: str, der: bytes, at: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.issuers.insert().values(id=id, name=name, subject=subject, certificate=der, created_at=utc(at))
            )

    def issuers(self) -> list[IssuerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.issuers).order_by(schema.issuers.c.created_at))
            return [issuer_row(r) for r in rows]

    def issuer(self, name: str) -> IssuerRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(schema.issuers).where(schema.issuers.c.name == name)).first()
            return issuer_row(r) if r else None

    # -- certificates ---------------------------------------------------------------------

    def add_certificate(
        self, rec: CertificateRecord, *, at: dt.datetime, audit: dict[str, Any], presign: bool = True
    ) -> None:
        """Record an issued certificate, its audit entry and (if `presign`) its OCSP outbox work."""
        values = dict(
            issuer_id=rec.issuer_id,
            serial=serial_column(rec.serial),
            der=rec.der,
            subject=rec.subject,
            dns_names=" ".join(rec.dns_names),
            not_before=utc(rec.not_before),
            not_after=utc(rec.not_after),
            spki_sha256=rec.spki_sha256,
            kind=rec.kind,
            created_at=utc(at),
            crl_shown_after_expiry=False,
            crl_shard=rec.crl_shard,
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(schema.certificates.insert().values(**values))
                if presign:
                    outbox.add(conn, "ocsp", rec.issuer_id, rec.serial, at)
                append_audit(conn, at, "issue", rec.issuer_id, rec.serial, audit)
        except sa.exc.IntegrityError:
            raise ConflictError(
                f"serial {serial_text(rec.serial, lower=True)} exists already for this issuer"
            ) from None

    def certificate(self, serial: int, issuer_id: str | None = None) -> CertificateRecord | None:
        query = sa.select(schema.certificates).where(schema.certificates.c.serial == serial_column(serial))
        if issuer_id is not None:
            query = query.where(schema.certificates.c.issuer_id == issuer_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(rows) > 1:
            raise ConflictError(
                f"serial {serial_text(serial, lower=True)} exists under several issuers; name the issuer"
            )
        return certificate_record(rows[0]) if rows else None

    def certificates_by_key(self, spki_sha256: str) -> list[CertificateRecord]:
        """Subscriber certificates certifying this key (policy 4.9.12)."""
        c = schema.certificates
        query = sa.select(c).where(c.c.spki_sha256 == spki_sha256, c.c.kind == "server")
        with self.engine.connect() as conn:
            return [certificate_record(r) for r in conn.execute(query)]

    def unrevoked(self, now: dt.datetime) -> list[CertificateRecord]:
        """Every unexpired, unrevoked subscriber certificate (for CA termination, policy 5.8).

        The OCSP signer is left alone: status services go on until the last certificate expires.
        """
        c = schema.certificates
        query = sa.select(c).where(c.c.revoked_at.is_(None), c.c.not_after > utc(now), c.c.kind == "server")
        with self.engine.connect() as conn:
            return [certificate_record(r) for r in conn.execute(query)]

    def listing(
        self, *, revoked: bool = False, expiring_before: dt.datetime | None = None, now: dt.datetime | None = None
    ) -> Iterator[CertificateRecord]:
        """Certificates for an operator's table, soonest expiry first, streamed.

        `revoked`: only revoked ones; `expiring_before` (with `now`): only unrevoked ones still
        valid at `now` whose notAfter comes before it.
        """
        c = schema.certificates
        query = sa.select(c).order_by(c.c.not_after, c.c.id)
        if revoked:
            query = query.where(c.c.revoked_at.is_not(None))
        if expiring_before is not None:
            query = query.where(c.c.revoked_at.is_(None), c.c.not_after <= utc(expiring_before))
            if now is not None:
                query = query.where(c.c.not_after > utc(now))
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield certificate_record(row)

    def statuses(self, issuer_id: str, *, valid_at: dt.datetime, batch: int = 5000) -> Iterator[list[StatusRow]]:
        """Status of every certificate of `issuer_id` not expired at `valid_at`, in batches.

        Keyset pagination on the primary key, so a long refresh neither holds one huge
        transaction nor misses rows inserted meanwhile (they are presigned at issuance anyway).
        """
        last = 0
        while True:
            query = statuses_page(issuer_id, valid_at=valid_at, after=last, batch=batch)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            last = rows[-1].id
            yield [status_row(r) for r in rows]

    def statuses_of(self, issuer_id: str, serials: list[int]) -> list[StatusRow]:
        """Status of the named serials (expired ones included; unknown ones absent)."""
        c = schema.certificates
        out: list[StatusRow] = []
        with self.engine.connect() as conn:
            for i in range(0, len(serials), CHUNK):
                chunk = [serial_column(s) for s in serials[i : i + CHUNK]]
                query = sa.select(
                    c.c.serial, c.c.not_after, c.c.revoked_at, c.c.revocation_reason, c.c.status_version
                ).where(c.c.issuer_id == issuer_id, c.c.serial.in_(chunk))
                out.extend(status_row(r) for r in conn.execute(query))
        return out

    # -- revocation -----------------------------------------------------------------------

    def revoke(
        self,
        record: CertificateRecord,
        *,
        reason: str,
        revoked_at: dt.datetime,
        at: dt.datetime,
        audit: dict[str, Any],
        replace: bool = False,
        block_key: bool = False,
    ) -> CertificateRecord:
        """Record a revocation durably, with its outbox work and audit entry, in one transaction.

        `replace` allows changing an existing revocation (BR 7.2.2: a later key compromise
        finding updates reason and date); otherwise an existing revocation is a ConflictError.
        `block_key` adds the certificate's key to the block list in the same transaction
        (BR 6.1.1.3), so a key-compromise revocation never stands without its block.
        """
        c = schema.certificates
        condition = [c.c.issuer_id == record.issuer_id, c.c.serial == serial_column(record.serial)]
        if not replace:
            condition.append(c.c.revoked_at.is_(None))
        shown = serial_text(record.serial, lower=True)
        with self.engine.begin() as conn:
            result = conn.execute(
                c.update()
                .where(*condition)
                .values(revoked_at=utc(revoked_at), revocation_reason=reason, status_version=c.c.status_version + 1)
            )
            if result.rowcount != 1:
                raise ConflictError(f"certificate {shown} is already revoked")
            outbox.add(conn, "ocsp", record.issuer_id, record.serial, at)
            outbox.add(conn, "crl", record.issuer_id, record.serial, at)
            append_audit(conn, at, "revoke", record.issuer_id, record.serial, audit)
            if block_key:
                _block_key(conn, record.spki_sha256, f"keyCompromise revocation of {shown}", at)
        return dataclasses.replace(record, revoked_at=revoked_at, revocation_reason=reason)

    # -- keys -----------------------------------------------------------------------------

    def block_key(self, spki_sha256: str, reason: str, at: dt.datetime) -> None:
        with self.engine.begin() as conn:
            _block_key(conn, spki_sha256, reason, at)

    def is_key_blocked(self, spki_sha256: str) -> bool:
        query = sa.select(schema.blocked_keys.c.reason).where(schema.blocked_keys.c.spki_sha256 == spki_sha256)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None


def _block_key(conn: Connection, spki_sha256: str, reason: str, at: dt.datetime) -> None:
    exists = conn.execute(
        sa.select(schema.blocked_keys.c.spki_sha256).where(schema.blocked_keys.c.spki_sha256 == spki_sha256)
    ).first()
    if exists is None:
        conn.execute(schema.blocked_keys.insert().values(spki_sha256=spki_sha256, reason=reason, blocked_at=utc(at)))
        append_audit(conn, at, "block-key", None, None, {"spki_sha256": spki_sha256, "reason": reason})


def statuses_page(issuer_id: str, *, valid_at: dt.datetime, after: int, batch: int) -> sa.Select[Any]:
    """One page of `Store.statuses`: rows of `issuer_id` past id `after`, unexpired at `valid_at`.

    Read through ix_certificates_issuer (issuer_id, id), so each page costs its own rows only
    (tests/test_store.py checks SQLite's plan).
    """
    c = schema.certificates
    return (
        sa.select(c.c.id, c.c.serial, c.c.not_after, c.c.revoked_at, c.c.revocation_reason, c.c.status_version)
        .where(c.c.issuer_id == issuer_id, c.c.not_after > utc(valid_at), c.c.id > after)
        .order_by(c.c.id)
        .limit(batch)
    )
