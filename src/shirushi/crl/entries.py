"""The revoked entries of one CRL scope, kept between CRLs with each entry's DER. No I/O.

A revocation-driven CRL at 100,000 entries used to re-read every row and re-encode every entry;
nearly all of that repeats the previous CRL. `EntrySet` keeps each listed entry's DER, so the
next CRL costs a read of the rows that changed and one `bytes.join`.

The set is a memo of the store, and the caller says what changed: the serials named by the
pending "crl" outbox rows (every revocation, and every key-compromise update of one, writes such
a row in its own transaction), or None for "read everything". The caller must pass None when it
cannot be sure the set saw every earlier change: on the first CRL, on scheduled CRLs, and when
another process made a CRL since (`last_number`); and it must add the serials of revoked rows
that arrived without an outbox row (rows above `last_certificate_id`). After a refresh the
listing is exactly what `select_entries` (`selection.py`) selects from a full read:
- a changed serial is read again; one the store no longer owes an entry leaves the set;
- a revocation dated after this CRL's thisUpdate is held back ("late") for a later CRL;
- serials shown after expiry on a published scheduled CRL leave through `forget`.
thisUpdate must not go backwards between refreshes; if it does, the set is rebuilt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence

from shirushi.asn1.crl import encode_entry
from shirushi.crl.selection import Revocation
from shirushi.store.revoked import RevokedRow

Read = Callable[[Sequence[int] | None], list[RevokedRow]]


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """What one CRL lists: the entries' DER and what the caller needs to record."""

    revoked: bytes  # the revokedCertificates content, entries concatenated
    entries: int
    first_shown_after_expiry: tuple[int, ...]  # serials; only on scheduled CRLs
    deferred: int  # revocations dated after thisUpdate, left for the next CRL
    rows_read: int  # rows read from the store for this CRL (the rest came from the set)


class EntrySet:
    """Revoked entries of one issuer as of the last CRL made from it in this process."""

    def __init__(self, *, arl: bool) -> None:
        self.arl = arl
        self.last_number = 0  # the CRL number last built from this set (0: none)
        self.last_certificate_id = 0  # certificate rows above this id were not yet looked at
        self._not_after: dict[int, dt.datetime] = {}  # every owed entry, listed or late
        self._der: dict[int, bytes] = {}  # listable entries
        self._late: dict[int, Revocation] = {}  # dated after the last thisUpdate
        self._as_of: dt.datetime | None = None

    def __len__(self) -> int:
        return len(self._not_after)

    def clear(self) -> None:
        self.last_number = 0
        self.last_certificate_id = 0
        self._not_after.clear()
        self._der.clear()
        self._late.clear()
        self._as_of = None

    def refresh(
        self, changed: Sequence[int] | None, read: Read, *, this_update: dt.datetime, scheduled: bool
    ) -> Listing:
        """Re-read the `changed` serials (everything when None) and list the set.

        `read(serials)` returns the rows of those serials the store still owes an entry (all of
        them for None).
        """
        try:
            return self._refresh(changed, read, this_update=this_update.replace(microsecond=0), scheduled=scheduled)
        except BaseException:
            # Half an update would leave a set that believes it is current.
            self.clear()
            raise

    def _refresh(
        self, changed: Sequence[int] | None, read: Read, *, this_update: dt.datetime, scheduled: bool
    ) -> Listing:
        if changed is None or (self._as_of is not None and this_update < self._as_of):
            self.clear()
            rows = read(None)
        else:
            rows = read(changed) if changed else []
            for serial in changed:
                self._drop(serial)
        too_late = this_update + dt.timedelta(seconds=1)
        arl = self.arl
        # Entries in revocation order, as later revocations are appended: consecutive CRLs of a
        # scope then share their runs of entries byte for byte, whichever order the database
        # returns rows in, and the archive stores each run once (archive_format.py).
        rows = sorted(rows, key=_revocation_order)
        for row in rows:
            self._drop(row.serial)
            self._not_after[row.serial] = row.not_after
            revocation = Revocation(row.serial, row.revoked_at, row.reason, row.not_after)
            if row.revoked_at >= too_late:
                self._late[row.serial] = revocation
            else:
                self._der[row.serial] = encode_entry(revocation, arl=arl)
        for serial, revocation in list(self._late.items()):
            if revocation.revoked_at < too_late:
                del self._late[serial]
                self._der[serial] = encode_entry(revocation, arl=arl)
        self._as_of = this_update
        first_shown: tuple[int, ...] = ()
        if scheduled:
            # RFC 5280 3.3: a scheduled CRL issued after notAfter is the entry's last appearance.
            not_after = self._not_after
            first_shown = tuple(serial for serial in self._der if not_after[serial] < this_update)
        return Listing(b"".join(self._der.values()), len(self._der), first_shown, len(self._late), len(rows))

    def forget(self, serials: Iterable[int]) -> None:
        """These entries are no longer owed (their last CRL is published)."""
        for serial in serials:
            self._drop(serial)

    def _drop(self, serial: int) -> None:
        self._not_after.pop(serial, None)
        self._der.pop(serial, None)
        self._late.pop(serial, None)


def _revocation_order(row: RevokedRow) -> tuple[dt.datetime, int]:
    return row.revoked_at, row.serial
