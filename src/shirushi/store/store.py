"""The Store: every read and write of the system of record. Does database I/O.

SQLite (a file in data_dir) by default, PostgreSQL by URL. Every change that must be followed by
other work (re-signing, a new CRL) writes an outbox row in the same transaction, and every change
appends to the audit log in that transaction too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shirushi.errors import ConflictError, ServiceError, StateError
from shirushi.store import schema

UTC = dt.UTC


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


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

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.serial)

    @classmethod
    def from_row(cls, row: Any) -> CertificateRecord:
        return cls(
            issuer_id=row.issuer_id,
            serial=int(row.serial, 16),
            der=bytes(row.der),
            subject=row.subject,
            dns_names=tuple(row.dns_names.split()),
            not_before=_aware(row.not_before),  # type: ignore[arg-type]
            not_after=_aware(row.not_after),  # type: ignore[arg-type]
            spki_sha256=row.spki_sha256,
            kind=row.kind,
            revoked_at=_aware(row.revoked_at),
            revocation_reason=row.revocation_reason,
            crl_shown_after_expiry=bool(row.crl_shown_after_expiry),
        )


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """What presigning needs of one certificate."""

    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    reason: str | None
    status_version: int = 0


class OutboxRow(NamedTuple):
    """One piece of follow-up work (see `schema.outbox`)."""

    id: int
    kind: Literal["ocsp", "crl"]
    issuer_id: str
    serial: int | None  # the certificate, for OCSP work


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(int(r.id), r.kind, r.issuer_id, None if r.serial is None else int(r.serial, 16))


@dataclasses.dataclass(frozen=True)
class IssuerRow:
    id: str
    name: str
    subject: str
    certificate: bytes


def _utc(t: dt.datetime) -> dt.datetime:
    # Aware UTC: PostgreSQL stores it as timestamptz; SQLite (no zone type) keeps the UTC wall
    # time, which `_aware` restores on the way back.
    return t.astimezone(UTC)


class Store:
    """System of record over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, create: bool = True) -> Store:
        """Open (and migrate) the database; with `create` False a missing SQLite file is an error."""
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
            if not create and not path.exists():
                raise StateError(f"no database at {path}: run `shirushi init` (or check data_dir / --config)")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StateError(f"database.url cannot be used: {exc}") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic, scripts inside the package).

        A database already at `schema.REVISION` is left alone without loading Alembic (a
        second of imports on a small machine, paid by every CLI command otherwise).
        """
        if self.revision() == schema.REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config(str(Path(__file__).parent / "migrations" / "alembic.ini"))
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except sa.exc.OperationalError as exc:
            raise ServiceError(f"database unreachable: {exc.orig}") from None

    def revision(self) -> str | None:
        """The Alembic revision the database is at (None when it has none yet)."""
        version = sa.table("alembic_version", sa.column("version_num"))
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                rows = conn.execute(sa.select(version.c.version_num)).all()
        except sa.exc.OperationalError as exc:
            raise ServiceError(f"database unreachable: {exc.orig}") from None
        # Several rows would mean branches: let Alembic sort that out.
        return str(rows[0].version_num) if len(rows) == 1 else None

    def _begin(self) -> Any:
        return self.engine.begin()

    # -- issuers --------------------------------------------------------------------------

    def add_issuer(self, id: str, name: str, subject: str, der: bytes, at: dt.datetime) -> None:
        with self._begin() as conn:
            conn.execute(
                schema.issuers.insert().values(id=id, name=name, subject=subject, certificate=der, created_at=_utc(at))
            )

    def issuers(self) -> list[IssuerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.issuers).order_by(schema.issuers.c.created_at))
            return [IssuerRow(r.id, r.name, r.subject, bytes(r.certificate)) for r in rows]

    def issuer(self, name: str) -> IssuerRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(schema.issuers).where(schema.issuers.c.name == name)).first()
            return IssuerRow(r.id, r.name, r.subject, bytes(r.certificate)) if r else None

    # -- certificates ---------------------------------------------------------------------

    def add_certificate(
        self, rec: CertificateRecord, *, at: dt.datetime, audit: dict[str, Any], presign: bool = True
    ) -> None:
        """Record an issued certificate, its audit entry and (if `presign`) its OCSP outbox work."""
        values = dict(
            issuer_id=rec.issuer_id,
            serial=rec.serial_hex,
            der=rec.der,
            subject=rec.subject,
            dns_names=" ".join(rec.dns_names),
            not_before=_utc(rec.not_before),
            not_after=_utc(rec.not_after),
            spki_sha256=rec.spki_sha256,
            kind=rec.kind,
            created_at=_utc(at),
            crl_shown_after_expiry=False,
        )
        try:
            with self._begin() as conn:
                conn.execute(schema.certificates.insert().values(**values))
                if presign:
                    self._outbox(conn, "ocsp", rec.issuer_id, rec.serial_hex, at)
                self._audit(conn, at, "issue", rec.issuer_id, rec.serial_hex, audit)
        except sa.exc.IntegrityError:
            raise ConflictError(f"serial {rec.serial_hex} exists already for this issuer") from None

    def certificate(self, serial: int, issuer_id: str | None = None) -> CertificateRecord | None:
        query = sa.select(schema.certificates).where(schema.certificates.c.serial == serial_hex(serial))
        if issuer_id is not None:
            query = query.where(schema.certificates.c.issuer_id == issuer_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(rows) > 1:
            raise ConflictError(f"serial {serial_hex(serial)} exists under several issuers; name the issuer")
        return CertificateRecord.from_row(rows[0]) if rows else None

    def certificates_by_key(self, spki_sha256: str) -> list[CertificateRecord]:
        """Subscriber certificates certifying this key (policy 4.9.12)."""
        c = schema.certificates
        query = sa.select(c).where(c.c.spki_sha256 == spki_sha256, c.c.kind == "server")
        with self.engine.connect() as conn:
            return [CertificateRecord.from_row(r) for r in conn.execute(query)]

    def unrevoked(self, now: dt.datetime) -> list[CertificateRecord]:
        """Every unexpired, unrevoked subscriber certificate (for CA termination, policy 5.8).

        The OCSP signer is left alone: status services go on until the last certificate expires.
        """
        c = schema.certificates
        query = sa.select(c).where(c.c.revoked_at.is_(None), c.c.not_after > _utc(now), c.c.kind == "server")
        with self.engine.connect() as conn:
            return [CertificateRecord.from_row(r) for r in conn.execute(query)]

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
            query = query.where(c.c.revoked_at.is_(None), c.c.not_after <= _utc(expiring_before))
            if now is not None:
                query = query.where(c.c.not_after > _utc(now))
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield CertificateRecord.from_row(row)

    def count_certificates(self, issuer_id: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(schema.certificates)
            .where(schema.certificates.c.issuer_id == issuer_id)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def statuses(self, issuer_id: str, *, valid_at: dt.datetime, batch: int = 5000) -> Iterator[list[StatusRow]]:
        """Status of every certificate of `issuer_id` not expired at `valid_at`, in batches.

        Keyset pagination on the primary key, so a long refresh neither holds one huge
        transaction nor misses rows inserted meanwhile (they are presigned at issuance anyway).
        """
        c = schema.certificates
        last = 0
        while True:
            query = (
                sa.select(c.c.id, c.c.serial, c.c.not_after, c.c.revoked_at, c.c.revocation_reason, c.c.status_version)
                .where(c.c.issuer_id == issuer_id, c.c.not_after > _utc(valid_at), c.c.id > last)
                .order_by(c.c.id)
                .limit(batch)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            last = rows[-1].id
            yield [_status_row(r) for r in rows]

    def statuses_of(self, issuer_id: str, serials: list[int]) -> list[StatusRow]:
        """Status of the named serials (expired ones included; unknown ones absent)."""
        c = schema.certificates
        out: list[StatusRow] = []
        with self.engine.connect() as conn:
            for i in range(0, len(serials), 500):
                chunk = [serial_hex(s) for s in serials[i : i + 500]]
                query = sa.select(
                    c.c.serial, c.c.not_after, c.c.revoked_at, c.c.revocation_reason, c.c.status_version
                ).where(c.c.issuer_id == issuer_id, c.c.serial.in_(chunk))
                out.extend(_status_row(r) for r in conn.execute(query))
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
        condition = [c.c.issuer_id == record.issuer_id, c.c.serial == record.serial_hex]
        if not replace:
            condition.append(c.c.revoked_at.is_(None))
        with self._begin() as conn:
            result = conn.execute(
                c.update()
                .where(*condition)
                .values(revoked_at=_utc(revoked_at), revocation_reason=reason, status_version=c.c.status_version + 1)
            )
            if result.rowcount != 1:
                raise ConflictError(f"certificate {record.serial_hex} is already revoked")
            self._outbox(conn, "ocsp", record.issuer_id, record.serial_hex, at)
            self._outbox(conn, "crl", record.issuer_id, record.serial_hex, at)
            self._audit(conn, at, "revoke", record.issuer_id, record.serial_hex, audit)
            if block_key:
                self._block_key(conn, record.spki_sha256, f"keyCompromise revocation of {record.serial_hex}", at)
        return dataclasses.replace(record, revoked_at=revoked_at, revocation_reason=reason)

    def block_key(self, spki_sha256: str, reason: str, at: dt.datetime) -> None:
        with self._begin() as conn:
            self._block_key(conn, spki_sha256, reason, at)

    def _block_key(self, conn: Connection, spki_sha256: str, reason: str, at: dt.datetime) -> None:
        exists = conn.execute(
            sa.select(schema.blocked_keys.c.spki_sha256).where(schema.blocked_keys.c.spki_sha256 == spki_sha256)
        ).first()
        if exists is None:
            conn.execute(
                schema.blocked_keys.insert().values(spki_sha256=spki_sha256, reason=reason, blocked_at=_utc(at))
            )
            self._audit(conn, at, "block-key", None, None, {"spki_sha256": spki_sha256, "reason": reason})

    # -- outbox ---------------------------------------------------------------------------

    @staticmethod
    def _outbox(conn: Connection, kind: str, issuer_id: str, serial: str | None, at: dt.datetime) -> None:
        conn.execute(schema.outbox.insert().values(kind=kind, issuer_id=issuer_id, serial=serial, created_at=_utc(at)))

    def pending_outbox(self, older_than: dt.datetime | None = None) -> list[OutboxRow]:
        """Work not yet done, oldest first."""
        o = schema.outbox
        query = sa.select(o.c.id, o.c.kind, o.c.issuer_id, o.c.serial).where(o.c.done_at.is_(None)).order_by(o.c.id)
        if older_than is not None:
            query = query.where(o.c.created_at <= _utc(older_than))
        with self.engine.connect() as conn:
            return [_outbox_row(r) for r in conn.execute(query)]

    def pending_ocsp(self, issuer_id: str, serials: Sequence[int]) -> list[OutboxRow]:
        """The OCSP work not yet done for these serials."""
        o = schema.outbox
        out: list[OutboxRow] = []
        with self.engine.connect() as conn:
            for i in range(0, len(serials), 500):
                chunk = [serial_hex(s) for s in serials[i : i + 500]]
                query = sa.select(o.c.id, o.c.kind, o.c.issuer_id, o.c.serial).where(
                    o.c.done_at.is_(None), o.c.kind == "ocsp", o.c.issuer_id == issuer_id, o.c.serial.in_(chunk)
                )
                out.extend(_outbox_row(r) for r in conn.execute(query))
        return out

    def outbox_done(self, ids: list[int], at: dt.datetime) -> None:
        if ids:
            with self._begin() as conn:
                conn.execute(schema.outbox.update().where(schema.outbox.c.id.in_(ids)).values(done_at=_utc(at)))

    # -- CRLs -----------------------------------------------------------------------------

    def allocate_crl_number(
        self, issuer_id: str, *, this_update: dt.datetime, next_update: dt.datetime, scheduled: bool
    ) -> int:
        """Reserve the next CRL number (RFC 5280 5.2.3); never reused, even across backends.

        The unique (issuer, number) constraint turns a race between two backends into a retry.
        """
        k = schema.crls
        for _attempt in range(20):
            try:
                with self._begin() as conn:
                    current = conn.execute(
                        sa.select(sa.func.max(k.c.number)).where(k.c.issuer_id == issuer_id)
                    ).scalar_one()
                    number = (current or 0) + 1
                    conn.execute(
                        k.insert().values(
                            issuer_id=issuer_id,
                            number=number,
                            this_update=_utc(this_update),
                            next_update=_utc(next_update),
                            scheduled=scheduled,
                        )
                    )
                    return int(number)
            except sa.exc.IntegrityError:
                continue
        raise ServiceError("could not allocate a CRL number: too much contention")

    def crl_published(
        self,
        issuer_id: str,
        number: int,
        *,
        entries: int,
        sha256: str,
        at: dt.datetime,
        shown_after_expiry: list[str],
        outbox_done: Sequence[int] = (),
    ) -> None:
        """Record a published CRL, the entries it showed after expiry and the CRL work it did."""
        k, c = schema.crls, schema.certificates
        with self._begin() as conn:
            for i in range(0, len(outbox_done), 500):
                conn.execute(
                    schema.outbox.update()
                    .where(schema.outbox.c.id.in_(list(outbox_done[i : i + 500])))
                    .values(done_at=_utc(at))
                )
            conn.execute(
                k.update()
                .where(k.c.issuer_id == issuer_id, k.c.number == number)
                .values(entries=entries, sha256=sha256, published_at=_utc(at))
            )
            for i in range(0, len(shown_after_expiry), 500):
                conn.execute(
                    c.update()
                    .where(c.c.issuer_id == issuer_id, c.c.serial.in_(shown_after_expiry[i : i + 500]))
                    .values(crl_shown_after_expiry=True)
                )
            self._audit(conn, at, "crl", issuer_id, None, {"number": number, "entries": entries, "sha256": sha256})

    def last_crl(self, issuer_id: str, *, scheduled: bool | None = None) -> dict[str, Any] | None:
        k = schema.crls
        query = sa.select(k).where(k.c.issuer_id == issuer_id, k.c.published_at.is_not(None))
        if scheduled is not None:
            query = query.where(k.c.scheduled.is_(scheduled))
        query = query.order_by(k.c.number.desc()).limit(1)
        with self.engine.connect() as conn:
            r = conn.execute(query).first()
        if r is None:
            return None
        return {
            "number": int(r.number),
            "this_update": _aware(r.this_update),
            "next_update": _aware(r.next_update),
            "scheduled": bool(r.scheduled),
            "entries": r.entries,
        }

    # -- keys -----------------------------------------------------------------------------

    def is_key_blocked(self, spki_sha256: str) -> bool:
        query = sa.select(schema.blocked_keys.c.reason).where(schema.blocked_keys.c.spki_sha256 == spki_sha256)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    # -- audit ----------------------------------------------------------------------------

    @staticmethod
    def _audit(
        conn: Connection,
        at: dt.datetime,
        action: str,
        issuer_id: str | None,
        serial: str | None,
        detail: dict[str, Any],
    ) -> None:
        conn.execute(
            schema.audit.insert().values(
                at=_utc(at),
                action=action,
                issuer_id=issuer_id,
                serial=serial,
                detail=json.dumps(detail, sort_keys=True, default=str),
            )
        )

    def audit(
        self,
        at: dt.datetime,
        action: str,
        detail: dict[str, Any],
        *,
        issuer_id: str | None = None,
        serial: str | None = None,
    ) -> None:
        with self._begin() as conn:
            self._audit(conn, at, action, issuer_id, serial, detail)

    def audit_entries(self, action: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(schema.audit).order_by(schema.audit.c.id)
        if action:
            query = query.where(schema.audit.c.action == action)
        with self.engine.connect() as conn:
            return [
                {
                    "at": _aware(r.at),
                    "action": r.action,
                    "issuer_id": r.issuer_id,
                    "serial": r.serial,
                    "detail": json.loads(r.detail),
                }
                for r in conn.execute(query)
            ]


def _status_row(r: Any) -> StatusRow:
    return StatusRow(
        int(r.serial, 16),
        _aware(r.not_after),  # type: ignore[arg-type]
        _aware(r.revoked_at),
        r.revocation_reason,
        int(r.status_version),
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (repository, API) never block the writer; busy_timeout: concurrent CLI runs
    # wait instead of failing; synchronous=FULL: a committed revocation survives power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
