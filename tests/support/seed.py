"""Seed many certificates fast, as benchmark instruments do: rows straight into the SQLite store.

`shirushi init` must have run on the data directory. The rows are good subscriber certificates
of the issuing CA with random 159-bit serials. Their `der` is a placeholder, not a certificate:
the status services (presign, OCSP, CRL, revocation) read only the serial, dates and revocation
columns. Querying them needs no certificate either: `openssl ocsp -issuer ... -serial 0xHEX`.
Shared by the tests and bench/ (which put tests/ on sys.path).
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from pathlib import Path

PLACEHOLDER_DER = b"seeded row: no certificate"
_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how the store keeps UTC times in SQLite


def _names(i: int) -> tuple[str, str]:
    return f"CN=s{i}.example.jp", f"s{i}.example.jp"  # subject, dns_names


def _key() -> str:
    return secrets.token_hex(32)  # spki_sha256: every seeded certificate has a key of its own


def seed_certificates(data_dir: Path, count: int, *, validity: dt.timedelta = dt.timedelta(days=90)) -> list[int]:
    """Insert `count` good certificates under the issuing CA; returns their serials."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = (now + validity).strftime(_FORMAT)
    stamp = now.strftime(_FORMAT)
    serials = [secrets.randbits(159) | 1 << 158 for _ in range(count)]
    with sqlite3.connect(data_dir / "shirushi.db") as db:
        (issuer_id,) = db.execute("select id from issuers where name = 'issuing-ca'").fetchone()
        db.executemany(
            "insert into certificates (issuer_id, serial, der, subject, dns_names, not_before, not_after,"
            " spki_sha256, kind, created_at, status_version, crl_shown_after_expiry)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, 'server', ?, 0, 0)",
            [
                (issuer_id, format(s, "x"), PLACEHOLDER_DER, *_names(i), stamp, not_after, _key(), stamp)
                for i, s in enumerate(serials)
            ],
        )
    return serials
