"""Random values for domain validation (policy 3.2.7, BR 3.2.2.4) and their lifetimes. Pure.

A value is 256 bits from `secrets` (the BR asks for at least 112), base64url without padding,
is good for one validation attempt (the challenge holding it moves to valid or invalid and is
never tried again), and expires 30 days after it was made. A successful validation may be
reused for issuance for REUSE_PERIOD; the record says until when, and the gate refuses after.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

VALUE_BITS = 256
MIN_VALUE_BITS = 112  # BR 1.6.1 "Random Value": at least 112 bits of entropy
VALUE_LIFETIME = dt.timedelta(days=30)  # policy 3.2.7
# How long a validation result backs new issuance (policy 3.2.7 keeps it within the value's
# 30 days, stricter than the BR 4.2.1 maximum).
REUSE_PERIOD = dt.timedelta(days=30)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_value() -> str:
    """A fresh random value: 256 bits, base64url (43 characters)."""
    return b64url(secrets.token_bytes(VALUE_BITS // 8))


def dns_digest(key_authorization: str) -> str:
    """The TXT content of ACME dns-01 (RFC 8555 8.4): base64url(SHA-256(key authorization))."""
    return b64url(hashlib.sha256(key_authorization.encode("ascii")).digest())


def expired(created_at: dt.datetime, now: dt.datetime) -> bool:
    return now >= created_at + VALUE_LIFETIME
