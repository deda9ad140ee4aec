"""Group commit of revocation CRLs and the CRL entry memo, in process (no servers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from shirushi.asn1.crl import encode_entry
from shirushi.asn1.der import read_tlv
from shirushi.crl.entries import EntrySet
from shirushi.crl.group import GroupCommit
from shirushi.crl.selection import Revocation, select_entries
from shirushi.store.revoked import RevokedRow

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def test_concurrent_callers_share_generations_that_began_after_they_called() -> None:
    started: list[int] = []  # sequence number of each generation, in start order
    clock = iter(range(1, 10**6))
    lock = threading.Lock()

    def tick() -> int:
        with lock:
            return next(clock)

    def make() -> int:
        started.append(tick())
        time.sleep(0.02)  # a CRL takes a while; callers pile up meanwhile
        return started[-1]

    group = GroupCommit(make)
    seen: list[tuple[int, int]] = []

    def caller() -> None:
        called = tick()
        seen.append((called, group.request()))

    threads = [threading.Thread(target=caller) for _ in range(60)]
    for t in threads:
        t.start()
        time.sleep(0.001)
    for t in threads:
        t.join()
    assert len(seen) == 60
    # Every caller was served by a generation that started after it called...
    assert all(generation > called for called, generation in seen)
    # ...and the 60 callers needed far fewer generations than 60.
    assert group.runs == len(started) < 30


def test_an_error_reaches_every_caller_of_that_generation_and_the_next_call_retries() -> None:
    failures = iter([True, False])

    def make() -> str:
        if next(failures):
            raise RuntimeError("signer down")
        return "published"

    group = GroupCommit(make)
    try:
        group.request()
    except RuntimeError as exc:
        assert "signer down" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    assert group.request() == "published"
    assert group.runs == 2


@dataclasses.dataclass
class Row:
    revoked_at: dt.datetime
    reason: str
    not_after: dt.datetime
    shown: bool = False


class FakeStore:
    """What the store would answer: the owed revocations (not yet shown after expiry)."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.reads: list[int] = []
        self.outbox: set[int] = set()  # serials of pending "crl" outbox rows

    def changed(self) -> list[int]:
        """The serials the pending outbox names, then marked done (the CRL is made)."""
        out = sorted(self.outbox)
        self.outbox.clear()
        return out

    def read(self, serials: Sequence[int] | None) -> list[RevokedRow]:
        wanted = [s for s in self.rows if not self.rows[s].shown] if serials is None else serials
        self.reads.append(len(wanted))
        return [
            RevokedRow(s, self.rows[s].revoked_at, self.rows[s].reason, self.rows[s].not_after)
            for s in wanted
            if s in self.rows and not self.rows[s].shown
        ]


def split(revoked: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(revoked):
        _, _, end = read_tlv(revoked, pos)
        out.append(revoked[pos:end])
        pos = end
    return out


operation = st.one_of(
    st.tuples(st.just("revoke"), st.integers(1, 40), st.integers(-3600, 7200), st.integers(-5, 5)),
    st.tuples(st.just("compromise"), st.integers(1, 40), st.integers(-3600, 0), st.just(0)),
    st.tuples(st.just("crl"), st.booleans(), st.integers(0, 3 * 86400), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, min_size=1, max_size=40))
def test_memo_lists_exactly_what_a_full_read_would(ops: list[tuple[str, int, int, int]]) -> None:
    """After any sequence of revocations, key-compromise updates and CRLs (scheduled or not),
    the memo's listing equals `select_entries` over a full read, entry for entry."""
    store = FakeStore()
    memo = EntrySet(arl=False)
    now = T0
    for kind, a, seconds, days in ops:
        if kind == "revoke":
            serial = a
            if serial not in store.rows:
                # Revoked up to an hour before `now` or two hours after (committed while a CRL
                # was being prepared, or a clock step); expiring within days of now.
                store.rows[serial] = Row(
                    now + dt.timedelta(seconds=seconds), "superseded", now + dt.timedelta(days=days)
                )
                store.outbox.add(serial)
        elif kind == "compromise":
            row = store.rows.get(a)
            if row is not None and row.reason != "keyCompromise":
                row.reason = "keyCompromise"
                row.revoked_at = min(row.revoked_at, now + dt.timedelta(seconds=seconds))
                store.outbox.add(a)
        else:
            scheduled = bool(a)
            now += dt.timedelta(seconds=seconds)
            owed = [Revocation(s, r.revoked_at, r.reason, r.not_after) for s, r in store.rows.items() if not r.shown]
            expected = select_entries(owed, this_update=now, scheduled=scheduled)
            changed = None if scheduled else store.changed()
            listing = memo.refresh(changed, store.read, this_update=now, scheduled=scheduled)
            assert sorted(split(listing.revoked)) == sorted(encode_entry(e) for e in expected.entries)
            assert listing.entries == len(expected.entries)
            assert sorted(listing.first_shown_after_expiry) == sorted(expected.first_shown_after_expiry)
            assert listing.deferred == len(expected.deferred)
            for serial in listing.first_shown_after_expiry:  # the CRL was published
                store.rows[serial].shown = True
            memo.forget(listing.first_shown_after_expiry)


def test_memo_reads_only_changed_rows() -> None:
    store = FakeStore()
    for i in range(1, 1001):
        store.rows[i] = Row(T0 - dt.timedelta(hours=1), "superseded", T0 + dt.timedelta(days=30))
    memo = EntrySet(arl=False)
    assert memo.refresh(None, store.read, this_update=T0, scheduled=False).entries == 1000
    store.rows[0x2000] = Row(T0, "keyCompromise", T0 + dt.timedelta(days=30))
    store.rows[5].reason = "keyCompromise"
    listing = memo.refresh([0x2000, 5], store.read, this_update=T0 + dt.timedelta(seconds=5), scheduled=False)
    assert listing.entries == 1001 and listing.rows_read == 2
    now_compromised = Revocation(5, T0 - dt.timedelta(hours=1), "keyCompromise", T0 + dt.timedelta(days=30))
    assert encode_entry(now_compromised) in split(listing.revoked)
    assert store.reads == [1000, 2]
