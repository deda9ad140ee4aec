"""CRL generation and publication (RFC 5280 5, BR 7.2, policy 4.9.6-4.9.8).

- `build`: pure; signed DER CRLs (`build_crl`, `Entry`), encoded by `shirushi.asn1.crl`.
- `selection`: pure; which revocations a CRL lists as certificates expire (`select_entries`).
- `publish`: file I/O; atomic publication into the repository, after the caller's archive step.
- `archive_format`: pure; how an archived CRL is cut into content-addressed pieces, retention.
- `archive`: the CRL archive in the database (`CrlArchive`).
"""

from shirushi.asn1.crl import CrlError, DuplicateSerialError, EntryLike, ProhibitedReasonError
from shirushi.crl.build import Entry, build_crl
from shirushi.crl.publish import StaleCrlError, publish
from shirushi.crl.selection import Revocation, Selection, select_entries

__all__ = [
    "CrlError",
    "DuplicateSerialError",
    "Entry",
    "EntryLike",
    "ProhibitedReasonError",
    "Revocation",
    "Selection",
    "StaleCrlError",
    "build_crl",
    "publish",
    "select_entries",
]
