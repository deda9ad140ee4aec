"""Decide which revocations a CRL lists (RFC 5280 3.3, BR 7.2 and 4.10.1, policy 2.3). Pure.

A revoked certificate's entry stays on every CRL until it has appeared on one regularly
scheduled CRL issued after the certificate's notAfter; after that it SHOULD be dropped (BR 7.2),
which is what the policy means by "expired certificates are removed from the CRL". RFC 5280 3.3
counts only *scheduled* CRLs, so a CRL issued because of a revocation still lists an expired
certificate but does not count as its post-expiry appearance.

`select_entries` takes what the store knows about each revocation, including the persisted flag
`shown_after_expiry`, and returns the entries to list plus the serials this CRL shows for the
first time after their expiry. The caller sets `shown_after_expiry` for those serials only once
that CRL has actually been published: a CRL that was built but never reached the repository has
not been seen by anybody, so it must not count. No I/O; time is an argument.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from shirushi.asn1.crl import CrlError


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    """What the store holds about one revoked certificate.

    `reason` is the RFC 5280 name; `shown_after_expiry` is True once a published, regularly
    scheduled CRL with thisUpdate after `not_after` has listed it. A `Revocation` is itself a CRL
    entry (it has `serial`, `revoked_at` and `reason`), so selecting a million of them copies no
    objects.
    """

    serial: int
    revoked_at: dt.datetime
    reason: str
    not_after: dt.datetime
    shown_after_expiry: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """The outcome of `select_entries` for one CRL.

    - `entries`: what the CRL lists, in input order (pass to `build_crl`).
    - `first_shown_after_expiry`: serials this CRL lists after their certificate's notAfter for
      the first time on a scheduled CRL; persist `shown_after_expiry` for them once the CRL is
      published. Always empty for an unscheduled CRL.
    - `dropped`: serials left out because an earlier scheduled CRL already listed them after
      expiry (RFC 5280 3.3 allows removal, BR 7.2 recommends it).
    - `deferred`: serials revoked after `this_update` (recorded while the CRL was being
      prepared); a CRL cannot list them (its revocationDate would follow thisUpdate, RFC 5280
      5.1.2.6), so they belong on the next one, which the caller should issue promptly (BR 4.9.7).
    """

    entries: tuple[Revocation, ...]
    first_shown_after_expiry: tuple[int, ...]
    dropped: tuple[int, ...]
    deferred: tuple[int, ...]


def select_entries(revocations: Iterable[Revocation], *, this_update: dt.datetime, scheduled: bool) -> Selection:
    """Choose the entries of a CRL whose thisUpdate is `this_update`.

    `scheduled` is True for the regular (every 24 hours, policy 4.9.7) CRL and False for one
    issued because of a revocation. A certificate counts as expired on this CRL when
    `this_update` is later than its notAfter: the validity period includes notAfter itself
    (RFC 5280 4.1.2.5), so a CRL issued exactly at notAfter is not "beyond" it.
    """
    if this_update.tzinfo is None or this_update.utcoffset() is None:
        raise CrlError("this_update must be timezone-aware", rule="RFC 5280 5.1.2.4: UTC")
    # Compare at whole seconds, as the CRL encodes its times. With thisUpdate truncated, a
    # revocation time whose whole second is later than thisUpdate is one at or after the next
    # second, which saves truncating a million revocation times.
    this_update = this_update.replace(microsecond=0)
    too_late = this_update + dt.timedelta(seconds=1)
    entries: list[Revocation] = []
    first_shown: list[int] = []
    dropped: list[int] = []
    deferred: list[int] = []
    for revocation in revocations:
        if revocation.shown_after_expiry:
            dropped.append(revocation.serial)
        elif revocation.revoked_at >= too_late:
            deferred.append(revocation.serial)
        else:
            entries.append(revocation)
            if scheduled and revocation.not_after < this_update:
                first_shown.append(revocation.serial)
    return Selection(tuple(entries), tuple(first_shown), tuple(dropped), tuple(deferred))
