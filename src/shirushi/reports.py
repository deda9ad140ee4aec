"""Certificate problem reports (BR 4.9.3, 4.9.5): receiving one, closing one, the time left.

Anyone may report a suspected key compromise, misuse, fraud or other problem with a certificate
this CA issued; the CA investigates within 24 hours of receipt and records the outcome. Closing
with "revoked" needs the certificate to be revoked already (`shirushi revoke`), so the record
never claims an action that was not taken. Does I/O through the Store; time comes from the Clock.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.clock import Clock
from shirushi.errors import InputError, NotFoundError, PolicyError
from shirushi.serials import serial_text
from shirushi.store import Store
from shirushi.store.reports import ACTIONS, ProblemReport

# BR 4.9.5: the preliminary report to the subscriber and the reporter within 24 hours.
INVESTIGATION = dt.timedelta(hours=24)
# Field sizes: enough for a reasoned report, bounded because anyone may send one.
MAX_REASON = 1000
MAX_CONTACT = 500
MAX_DETAIL = 8000
MAX_NOTE = 4000


class NotOurs(PolicyError):
    """The report names a certificate this CA did not issue."""

    http_status = 422
    code = "not_issued_here"


def _bounded(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise InputError(f"field {name!r} is over {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InputError(f"field {name!r} holds control characters")
    return value


def receive(
    store: Store,
    clock: Clock,
    *,
    serial: int | None,
    certificate: str | None,
    reason: str,
    contact: str,
    detail: str,
    client: str,
) -> ProblemReport:
    """Record a report about a certificate named by serial or given as PEM; its deadline is 24 h on."""
    _bounded(reason, "reason", MAX_REASON)
    _bounded(contact, "contact", MAX_CONTACT)
    _bounded(detail, "detail", MAX_DETAIL)
    given: x509.Certificate | None = None
    if certificate is not None:
        try:
            given = x509.load_pem_x509_certificate(certificate.encode())
        except ValueError:
            raise InputError("field 'certificate' is not a PEM certificate") from None
        if serial is not None and serial != given.serial_number:
            raise InputError("fields 'serial' and 'certificate' name different certificates")
        serial = given.serial_number
    if serial is None:
        raise InputError("give 'serial' (hex) or 'certificate' (PEM) to say which certificate the report is about")
    record = store.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial_text(serial)} was issued by this CA")
    if given is not None and given.public_bytes(serialization.Encoding.DER) != record.der:
        raise NotOurs(f"the certificate given is not the one this CA issued with serial {serial_text(serial)}")
    now = clock.now()
    return store.reports.add(
        received_at=now,
        deadline=now + INVESTIGATION,
        issuer_id=record.issuer_id,
        serial=serial,
        reason=reason,
        contact=contact,
        detail=detail,
        client=client[:64],
    )


def close(store: Store, clock: Clock, report_id: int, *, action: str, note: str) -> ProblemReport:
    """Close an open report with the action taken and a note saying why."""
    if action not in ACTIONS:
        raise InputError(f"action {action!r}: use one of {', '.join(ACTIONS)}")
    if not note.strip():
        raise InputError("a note saying what was found is required")
    _bounded(note, "note", MAX_NOTE)
    report = store.reports.get(report_id)
    if report is None:
        raise NotFoundError(f"no problem report {report_id}")
    if action == "revoked":
        record = store.certificate(report.serial, report.issuer_id)
        if record is None or record.revoked_at is None:
            shown = serial_text(report.serial)
            raise PolicyError(
                f"certificate {shown} is not revoked; revoke it first (shirushi revoke {shown} --reason ...)"
            )
    return store.reports.close(report_id, action=action, note=note, at=clock.now())


def time_left(report: ProblemReport, now: dt.datetime) -> str:
    """The time to the deadline as the CLI shows it: `5h12m left`, `overdue 1h03m` or `closed`."""
    if not report.open:
        return "closed"
    seconds = int((report.deadline - now).total_seconds())
    hours, minutes = divmod(abs(seconds) // 60, 60)
    shown = f"{hours}h{minutes:02d}m"
    return f"{shown} left" if seconds >= 0 else f"overdue {shown}"
