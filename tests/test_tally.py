"""The responder's per-worker request tally: counts only when metrics are on (tally.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shirushi.metrics.registry import ENV
from shirushi.responder.tally import GOOD, NO_STATUS, Tally


def test_counts_per_kind_outcome_and_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    tally = Tally()
    tally.count(0, b"ok\t200", GOOD)
    tally.count(0, b"ok\t200", GOOD)
    tally.count(2, b"malformed\t200", NO_STATUS)
    tally.waited_for(0.003)
    assert tally.counts == {(0, b"ok\t200", GOOD): 2, (2, b"malformed\t200", NO_STATUS): 1}
    assert sum(tally.waited) == 1 and tally.waited_sum == pytest.approx(0.003)


def test_counts_nothing_with_metrics_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    tally = Tally()
    tally.count(0, b"ok\t200", GOOD)
    tally.waited_for(0.003)
    assert tally.counts == {} and sum(tally.waited) == 0 and tally.waited_sum == 0.0
