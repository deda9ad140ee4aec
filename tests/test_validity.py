"""Validity capping: policy 398 days, the BR 6.3.2 schedule by notBefore, the CA's notAfter."""

from __future__ import annotations

import datetime as dt

import pytest

from shirushi.ca import validity
from shirushi.errors import PolicyError

UTC = dt.UTC
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)
FAR = dt.datetime(2040, 1, 1, tzinfo=UTC)


def days_counted_inclusively(not_before: dt.datetime, not_after: dt.datetime) -> float:
    # BR 6.3.2: the period runs from notBefore through notAfter inclusive.
    return (not_after - not_before + SECOND) / DAY


@pytest.mark.parametrize(
    ("not_before", "days"),
    [
        (dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC), 398),
        (dt.datetime(2026, 3, 15, tzinfo=UTC), 200),
        (dt.datetime(2026, 11, 29, tzinfo=UTC), 200),
        (dt.datetime(2027, 3, 14, 23, 59, 59, tzinfo=UTC), 200),
        (dt.datetime(2027, 3, 15, tzinfo=UTC), 100),
        (dt.datetime(2029, 3, 14, 23, 59, 59, tzinfo=UTC), 100),
        (dt.datetime(2029, 3, 15, tzinfo=UTC), 47),
    ],
)
def test_br_schedule_by_not_before(not_before: dt.datetime, days: int) -> None:
    assert validity.br_max_days(not_before) == days
    end = validity.not_after(not_before, requested_days=None, policy_max_days=398, ca_not_after=FAR)
    assert days_counted_inclusively(not_before, end) == days


def test_request_shorter_than_cap_is_honoured() -> None:
    nb = dt.datetime(2026, 11, 29, tzinfo=UTC)
    end = validity.not_after(nb, requested_days=30, policy_max_days=398, ca_not_after=FAR)
    assert days_counted_inclusively(nb, end) == 30


def test_request_longer_than_cap_is_capped() -> None:
    nb = dt.datetime(2027, 6, 1, tzinfo=UTC)
    end = validity.not_after(nb, requested_days=365, policy_max_days=398, ca_not_after=FAR)
    assert days_counted_inclusively(nb, end) == 100


def test_policy_cap_below_br() -> None:
    nb = dt.datetime(2026, 11, 29, tzinfo=UTC)
    end = validity.not_after(nb, requested_days=None, policy_max_days=90, ca_not_after=FAR)
    assert days_counted_inclusively(nb, end) == 90


def test_never_past_the_issuing_ca() -> None:
    nb = dt.datetime(2026, 11, 29, tzinfo=UTC)
    ca_end = nb + dt.timedelta(days=10)
    assert validity.not_after(nb, requested_days=None, policy_max_days=398, ca_not_after=ca_end) == ca_end


def test_expired_ca_refuses() -> None:
    nb = dt.datetime(2026, 11, 29, tzinfo=UTC)
    with pytest.raises(PolicyError, match="expires too soon"):
        validity.not_after(nb, requested_days=None, policy_max_days=398, ca_not_after=nb)


def test_zero_days_refused() -> None:
    with pytest.raises(PolicyError, match="at least 1"):
        validity.not_after(
            dt.datetime(2026, 11, 29, tzinfo=UTC), requested_days=0, policy_max_days=398, ca_not_after=FAR
        )
