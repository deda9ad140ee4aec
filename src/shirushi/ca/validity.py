"""Validity periods of subscriber certificates. Pure: time is an argument.

The lesser of: what was asked, the policy's 398 days (6.3.2), the CA/Browser Forum schedule in
force at notBefore (BR 6.3.2, ballot SC-081), and the issuing CA's own notAfter (policy 5.6).
The BR count validity inclusively (a certificate valid from 00:00:00 to 00:00:00 the next day
lasts one day and one second), so for N days notAfter = notBefore + N days - 1 second.
"""

from __future__ import annotations

import datetime as dt

from shirushi.errors import ArgumentError, PolicyError

UTC = dt.UTC

# (effective from notBefore, maximum days) per BR 6.3.2; newest first.
BR_SCHEDULE: tuple[tuple[dt.datetime, int], ...] = (
    (dt.datetime(2029, 3, 15, tzinfo=UTC), 47),
    (dt.datetime(2027, 3, 15, tzinfo=UTC), 100),
    (dt.datetime(2026, 3, 15, tzinfo=UTC), 200),
    (dt.datetime(2020, 9, 1, tzinfo=UTC), 398),
)


def br_max_days(not_before: dt.datetime) -> int:
    """The longest validity, in days, the BR allow for a certificate with this notBefore."""
    for since, days in BR_SCHEDULE:
        if not_before >= since:
            return days
    return 398


def not_after(
    not_before: dt.datetime,
    *,
    requested_days: int | None,
    policy_max_days: int,
    ca_not_after: dt.datetime,
) -> dt.datetime:
    """The notAfter of a subscriber certificate issued with this notBefore."""
    if requested_days is not None and requested_days < 1:
        raise ArgumentError("days", f"must be at least 1, not {requested_days}")
    days = min(policy_max_days, br_max_days(not_before))
    if requested_days is not None:
        days = min(days, requested_days)
    end = not_before + dt.timedelta(days=days) - dt.timedelta(seconds=1)
    end = min(end, ca_not_after)
    if end <= not_before:
        raise PolicyError("the issuing CA certificate expires too soon to issue under it (policy 5.6)")
    return end
