"""ACME Renewal Information (RFC 9773): certificate ids and suggested renewal windows. Pure.

The id is base64url(AKI keyIdentifier) "." base64url(serial DER INTEGER content). A good
certificate's window is the middle of its last third of life; a revoked one's window starts at
its revocation and ends an hour later, already past for a client that asks later, so it renews
at once (RFC 9773 4.2) before a mass revocation bites.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from shirushi.acme.jws import b64decode, b64encode
from shirushi.acme.problems import Problem

RETRY_AFTER = 6 * 3600  # seconds: how often a client should ask again


def serial_bytes(serial: int) -> bytes:
    """The content octets of the serial's DER INTEGER (a leading 0 when the top bit is set)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None
    return f"{b64encode(aki)}.{b64encode(serial_bytes(cert.serial_number))}"


def parse_id(text: str) -> tuple[bytes, int]:
    aki_text, sep, serial_text = text.partition(".")
    if not sep:
        raise Problem("malformed", "a renewalInfo id is AKI.serial in base64url")
    serial = int.from_bytes(b64decode(serial_text, "serial"), "big")
    return b64decode(aki_text, "AKI"), serial


def window(
    not_before: dt.datetime, not_after: dt.datetime, revoked_at: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if revoked_at is not None:
        return revoked_at, revoked_at + dt.timedelta(hours=1)
    life = not_after - not_before
    return not_before + life * 2 / 3, not_before + life * 5 / 6
