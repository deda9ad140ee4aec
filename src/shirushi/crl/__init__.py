"""CRL generation and publication (RFC 5280 5, BR 7.2, policy 4.9.6-4.9.8).

- `build`: pure; signed DER CRLs (`build_crl`, `Entry`), encoded by `shirushi.asn1.crl`.
- `selection`: pure; which revocations a CRL lists as certificates expire (`select_entries`).
- `publish`: file I/O; atomic publication into the repository, after the caller's archive step.
- `archive_format`: pure; how an archived CRL is cut into content-addressed pieces, retention.
- `archive`: the CRL archive in the database (`CrlArchive`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager, and cheap (no encoder): `publish` is also the submodule's name, which a lazy lookup
# would hand out instead of the function once the submodule is loaded.
from shirushi.crl.publish import StaleCrlError, publish

if TYPE_CHECKING:
    from shirushi.asn1.crl import CrlError, DuplicateSerialError, EntryLike, ProhibitedReasonError
    from shirushi.crl.build import Entry, build_crl
    from shirushi.crl.selection import Revocation, Selection, select_entries

# Loaded on first use (PEP 562): issuance imports `shirushi.crl.shards` for the CDP URL and
# must not pay for the CRL encoder with it (CLI start-up).
_WHERE = {
    "CrlError": "shirushi.asn1.crl",
    "DuplicateSerialError": "shirushi.asn1.crl",
    "EntryLike": "shirushi.asn1.crl",
    "ProhibitedReasonError": "shirushi.asn1.crl",
    "Entry": "shirushi.crl.build",
    "build_crl": "shirushi.crl.build",
    "Revocation": "shirushi.crl.selection",
    "Selection": "shirushi.crl.selection",
    "select_entries": "shirushi.crl.selection",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
