"""The revoked entries of one CRL scope, kept between CRLs with each entry's DER. No I/O.

A revocation-driven CRL at 100,000 entries used to re-read every row, rebuild every entry and
re-encode it; most of that work repeats what the previous CRL did. `EntrySet` holds, per
serial, the `status_version` last read and the entry's encoded DER, so a new CRL costs one
narrow read of (serial, status_version) pairs, a full read of the rows that changed, and one
`bytes.join` of the kept DER.

The set is only a memo of the store: `refresh` is handed what the store says now, and the result
is exactly what a full read would select (`select_entries` rules, see `selection.py`):
- a row whose `status_version` changed, or that is new, is read again (key-compromise updates
  bump the version, so reason and date changes are seen);
- a row that left the store's answer (its post-expiry appearance is recorded) leaves the set;
- a revocation dated after this CRL's thisUpdate is held back ("late") until a later CRL.
The CRL's thisUpdate must not go backwards between refreshes; if it does (a clock set back),
the set is emptied and rebuilt from a full read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence

from shirushi.crl.build import encode_entry
from shirushi.crl.selection import Revocation
from shirushi.store.revoked import RevokedRow

# Above this many changed rows a full read is cheaper than IN-lists.
FULL_READ_ABOVE = 20_000


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """What one CRL lists: the entries' DER and what the caller needs to record."""

    revoked: bytes  # the revokedCertificates content, entries concatenated
    entries: int
    first_shown_after_expiry: tuple[str, ...]  # serial hex; only on scheduled CRLs
    deferred: int  # revocations dated after thisUpdate, left for the next CRL
    rows_read: int  # full rows read from the store for this CRL (the rest came from the set)


class EntrySet:
    """Revoked entries of one issuer (or shard) as of the last CRL made in this process."""

    def __init__(self, *, arl: bool) -> None:
        self.arl = arl
        self._versions: dict[str, int] = {}
        self._not_after: dict[str, dt.datetime] = {}
        self._der: dict[str, bytes] = {}  # listable entries
        self._late: dict[str, Revocation] = {}  # dated after the last thisUpdate
        self._as_of: dt.datetime | None = None

    def __len__(self) -> int:
        return len(self._versions)

    def clear(self) -> None:
        self._versions.clear()
        self._not_after.clear()
        self._der.clear()
        self._late.clear()
        self._as_of = None

    def refresh(
        self,
        versions: dict[str, int],
        read: Callable[[Sequence[str] | None], list[RevokedRow]],
        *,
        this_update: dt.datetime,
        scheduled: bool,
    ) -> Listing:
        """Bring the set up to `versions` (the store's serial -> status_version now) and list it.

        `read(serials)` returns the full rows of those serials (all rows for None); rows it does
        not return have left the store's answer since `versions` was read.
        """
        try:
            return self._refresh(versions, read, this_update=this_update.replace(microsecond=0), scheduled=scheduled)
        except BaseException:
            # Half an update would leave rows marked as read whose entries are missing.
            self.clear()
            raise

    def _refresh(
        self,
        versions: dict[str, int],
        read: Callable[[Sequence[str] | None], list[RevokedRow]],
        *,
        this_update: dt.datetime,
        scheduled: bool,
    ) -> Listing:
        if self._as_of is not None and this_update < self._as_of:
            self.clear()
        known = self._versions
        changed = [serial for serial, version in versions.items() if known.get(serial) != version]
        for serial in known.keys() - versions.keys():
            self._drop(serial)
        rows: list[RevokedRow] = []
        if changed:
            full = not known or len(changed) > FULL_READ_ABOVE
            rows = read(None if full else changed)
            returned = {row.serial for row in rows}
            for serial in changed:
                if serial not in returned:
                    self._drop(serial)
        too_late = this_update + dt.timedelta(seconds=1)
        for row in rows:
            self._drop(row.serial)
            known[row.serial] = row.status_version
            self._not_after[row.serial] = row.not_after
            revocation = Revocation(int(row.serial, 16), row.revoked_at, row.reason, row.not_after)
            if row.revoked_at >= too_late:
                self._late[row.serial] = revocation
            else:
                self._der[row.serial] = encode_entry(revocation, arl=self.arl)
        for serial, revocation in list(self._late.items()):
            if revocation.revoked_at < too_late:
                del self._late[serial]
                self._der[serial] = encode_entry(revocation, arl=self.arl)
        self._as_of = this_update
        first_shown: tuple[str, ...] = ()
        if scheduled:
            # RFC 5280 3.3: a scheduled CRL issued after notAfter is the entry's last appearance.
            not_after = self._not_after
            first_shown = tuple(serial for serial in self._der if not_after[serial] < this_update)
        return Listing(b"".join(self._der.values()), len(self._der), first_shown, len(self._late), len(rows))

    def _drop(self, serial: str) -> None:
        self._versions.pop(serial, None)
        self._not_after.pop(serial, None)
        self._der.pop(serial, None)
        self._late.pop(serial, None)
