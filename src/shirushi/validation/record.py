"""Writing a validation attempt to the record (policy 3.2.7, 5.4.1). Does database I/O.

Every attempt is audited; a success also becomes a DomainValidation that issuance may rely on
until its reuse period ends.
"""

from __future__ import annotations

import datetime as dt

from shirushi.store.acme import DomainValidation, ValidationRecords, audit_event
from shirushi.validation import dns_change
from shirushi.validation.attempt import Attempt
from shirushi.validation.values import REUSE_PERIOD


def record_attempt(records: ValidationRecords, attempt: Attempt, now: dt.datetime, account: str | None = None) -> None:
    detail = {**attempt.audit(), "account": account}
    if not attempt.ok:
        audit_event(records.engine, now, "domain-validation-failed", detail)
        return
    base = attempt.name.removeprefix("*.")
    records.add(
        DomainValidation(
            name=base,
            method=attempt.method,
            wildcard=attempt.method == dns_change.METHOD,
            validated_at=now,
            reuse_until=now + REUSE_PERIOD,
            account=account,
        ),
        {**detail, "reuse_until": (now + REUSE_PERIOD).isoformat()},
    )
