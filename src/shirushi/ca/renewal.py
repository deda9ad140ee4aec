"""Renewal with a new key (policy 4.7): the rules, and the use case over the Authority.

A certificate may be renewed from 90 days before its notAfter, not once revoked or expired
(4.7.1), and only with a key other than the one it certifies. The new certificate keeps the
certified data of the old one (subject and DNS names): the CSR supplies the new key and its
proof of possession, nothing else. A change of certified data is revoke + new issue (4.8).
The new certificate's issuance audit record names the certificate it renews.

`check_renewable` is pure; `renew` does I/O through the Store and the Authority.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from cryptography import x509

from shirushi.asn1.keys import spki_sha256
from shirushi.ca.authority import Authority, Issued
from shirushi.ca.csr import load_csr
from shirushi.errors import ConflictError, InputError, NotFoundError, PolicyError
from shirushi.serials import serial_text
from shirushi.store import CertificateRecord

RENEWAL_WINDOW = dt.timedelta(days=90)


class SameKeyError(InputError):
    """The renewal CSR carries the key the old certificate certifies (policy 4.7). 400 over
    HTTP, as interface.md gives it."""

    http_status = 400
    code = "same_key"


class RenewalRefused(PolicyError):
    """A well-formed renewal request for a certificate that may not be renewed this way."""

    http_status = 422
    code = "renewal_refused"


class RenewalWindowError(RenewalRefused):
    """Renewal asked for before the window opens (policy 4.7.1)."""

    code = "renewal_window"


def _day(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_renewable(record: CertificateRecord, now: dt.datetime, issuing_id: str) -> None:
    """Raise the error naming the rule when `record` may not be renewed at `now`."""
    shown = serial_text(record.serial)
    if record.kind != "server" or record.issuer_id != issuing_id:
        raise RenewalRefused(f"certificate {shown} is not a subscriber certificate of this CA's issuing CA")
    if record.revoked_at is not None:
        raise ConflictError(f"certificate {shown} is revoked: a revoked certificate cannot be renewed (policy 4.7.1)")
    if record.not_after <= now:
        raise ConflictError(
            f"certificate {shown} expired at {_day(record.not_after)}: an expired certificate cannot be "
            "renewed (policy 4.7.1); request a new one"
        )
    opens = record.not_after - RENEWAL_WINDOW
    if now < opens:
        raise RenewalWindowError(
            f"certificate {shown} can be renewed from {_day(opens)}, 90 days before it expires (policy 4.7.1)"
        )


def renew(
    authority: Authority,
    serial: int,
    csr_data: bytes,
    *,
    days: int | None = None,
    audit: Mapping[str, object] | None = None,
) -> tuple[Issued, CertificateRecord]:
    """Issue the renewal of certificate `serial` for the new key in `csr_data`; (new, old)."""
    record = authority.store.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial_text(serial)}")
    hierarchy = authority.hierarchy()
    check_renewable(record, authority.clock.now(), hierarchy.issuing_id)
    csr = load_csr(csr_data)
    try:
        new_key = spki_sha256(csr.public_key())
    except ValueError:
        raise InputError("the CSR's public key cannot be decoded") from None
    except TypeError:  # a key type pyca cannot hash as SPKI is not one we certify either
        raise PolicyError("the CSR's key type is not accepted") from None
    if new_key == record.spki_sha256:
        raise SameKeyError(
            f"the CSR carries the key certificate {serial_text(serial)} certifies: renewal needs a new key (policy 4.7)"
        )
    try:
        old = x509.load_der_x509_certificate(record.der)
    except ValueError:
        raise RenewalRefused(f"certificate {serial_text(serial)} has no stored certificate to renew from") from None
    issued = authority.issue(
        csr_data,
        dns_names=list(record.dns_names),
        subject=old.subject,
        days=days,
        audit={"renewal_of": serial_text(serial), **(audit or {})},
    )
    return issued, record
