"""Certificate problem reports (BR 4.9.3, 4.9.5) in the system of record. Does database I/O.

A report is received with its 24 h investigation deadline and stays open until closed with the
action taken ("revoked" or "rejected") and a note. Receipt and closing each append to the audit
log (policy 5.4) in the transaction that makes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.errors import ConflictError, NotFoundError
from shirushi.store import schema
from shirushi.store.audit import append_audit
from shirushi.store.records import aware, serial_column, serial_value, utc

ACTIONS = ("revoked", "rejected")


@dataclasses.dataclass(frozen=True)
class ProblemReport:
    id: int
    received_at: dt.datetime
    deadline: dt.datetime
    issuer_id: str | None
    serial: int
    reason: str
    contact: str
    detail: str
    client: str
    closed_at: dt.datetime | None = None
    action: str | None = None
    note: str | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None


def _report(row: sa.Row[tuple[object, ...]]) -> ProblemReport:
    m = row._mapping
    return ProblemReport(
        id=int(m["id"]),
        received_at=aware(m["received_at"]),  # type: ignore[arg-type]
        deadline=aware(m["deadline"]),  # type: ignore[arg-type]
        issuer_id=m["issuer_id"],
        serial=serial_value(m["serial"]),
        reason=m["reason"],
        contact=m["contact"],
        detail=m["detail"],
        client=m["client"],
        closed_at=aware(m["closed_at"]),
        action=m["action"],
        note=m["note"],
    )


class ProblemReports:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        *,
        received_at: dt.datetime,
        deadline: dt.datetime,
        issuer_id: str | None,
        serial: int,
        reason: str,
        contact: str,
        detail: str,
        client: str,
    ) -> ProblemReport:
        t = schema.problem_reports
        values = dict(
            received_at=utc(received_at),
            deadline=utc(deadline),
            issuer_id=issuer_id,
            serial=serial_column(serial),
            reason=reason,
            contact=contact,
            detail=detail,
            client=client,
        )
        with self.engine.begin() as conn:
            key = conn.execute(t.insert().values(**values)).inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            append_audit(
                conn,
                received_at,
                "problem-report",
                issuer_id,
                serial,
                {
                    "report": new_id,
                    "received_at": received_at.isoformat(),
                    "deadline": deadline.isoformat(),
                    "reason": reason,
                    "contact": contact,
                    "detail": detail,
                    "client": client,
                },
            )
        return ProblemReport(new_id, received_at, deadline, issuer_id, serial, reason, contact, detail, client)

    def get(self, report_id: int) -> ProblemReport | None:
        t = schema.problem_reports
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == report_id)).first()
        return _report(row) if row else None

    def listing(self, *, open_only: bool = False) -> list[ProblemReport]:
        """Reports, soonest deadline first."""
        t = schema.problem_reports
        query = sa.select(t).order_by(t.c.deadline, t.c.id)
        if open_only:
            query = query.where(t.c.closed_at.is_(None))
        with self.engine.connect() as conn:
            return [_report(r) for r in conn.execute(query)]

    def close(self, report_id: int, *, action: str, note: str, at: dt.datetime) -> ProblemReport:
        """Close an open report with the action taken; ConflictError if it is closed already."""
        assert action in ACTIONS
        t = schema.problem_reports
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == report_id)).first()
            if row is None:
                raise NotFoundError(f"no problem report {report_id}")
            result = conn.execute(
                t.update()
                .where(t.c.id == report_id, t.c.closed_at.is_(None))
                .values(closed_at=utc(at), action=action, note=note)
            )
            if result.rowcount != 1:
                raise ConflictError(f"problem report {report_id} is closed already")
            report = _report(row)
            append_audit(
                conn,
                at,
                "problem-report-close",
                report.issuer_id,
                report.serial,
                {
                    "report": report_id,
                    "action": action,
                    "note": note,
                    "deadline": report.deadline.isoformat(),
                    "within_deadline": at <= report.deadline,
                },
            )
        return dataclasses.replace(report, closed_at=at, action=action, note=note)
