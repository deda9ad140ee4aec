"""DER encoding of CRLs (RFC 5280 5, BR 7.2): entries, the TBSCertList, the CertificateList. Pure.

Built by hand rather than through pyca/cryptography's `CertificateRevocationListBuilder` because a
CRL can hold a million entries and the builder costs several microseconds of Python per entry.
Here each entry is one integer encoding, two table lookups and a few `bytearray` appends; the
time prefixes (tag, length, date) are memoized per day and the `HHMMSSZ` suffixes per second of
day, and the reasonCode extensions are constants. The output is what the builder produces for
the same input (tests/test_crl_build.py compares them byte for byte).

Encoding (RFC 5280 5.1-5.3, BR 7.2):
- version v2; signature and signatureAlgorithm both exactly `300d06092a864886f70d01010b0500`
  (sha256WithRSAEncryption with NULL parameters, BR 7.1.3.2.1);
- thisUpdate / nextUpdate / revocationDate: UTCTime through 2049, GeneralizedTime from 2050 and
  before 1950, whole seconds, `Z` (RFC 5280 5.1.2.4-5.1.2.6); fractions are dropped;
- revokedCertificates absent when there is nothing to list (RFC 5280 5.1.2.6);
- crlExtensions: authorityKeyIdentifier (keyIdentifier only) and cRLNumber, both non-critical
  (BR 7.2.2, RFC 5280 5.2.1, 5.2.3);
- an entry's only extension is a non-critical reasonCode, omitted for unspecified (BR 7.2.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Protocol

from cryptography import x509

from shirushi.asn1 import der
from shirushi.errors import PolicyError
from shirushi.reasons import ARL_REASONS, CODES, CRL_REFUSED, SUBSCRIBER_REASONS, ReasonName

UTC = dt.UTC

# AlgorithmIdentifier { sha256WithRSAEncryption, NULL }, byte-identical as BR 7.1.3.2.1 demands.
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


class CrlError(PolicyError):
    """A CRL cannot be built as asked. `rule` names the requirement that refuses it."""

    code = "crl"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(f"{message} ({rule})")
        self.rule = rule


class ProhibitedReasonError(CrlError):
    """An entry's revocation reason is not allowed on this kind of CRL."""

    def __init__(self, serial: int, reason: str, *, rule: str) -> None:
        super().__init__(f"serial {serial:#x}: reason {reason!r} is not allowed on this CRL", rule=rule)
        self.serial = serial
        self.reason = reason


class DuplicateSerialError(CrlError):
    """The same serial number was given twice."""

    def __init__(self, serial: int) -> None:
        super().__init__(
            f"serial {serial:#x} is listed twice",
            rule="RFC 5280 5.1.2.6: one entry per revoked certificate",
        )
        self.serial = serial


class EntryLike(Protocol):
    """What one CRL entry needs; `crl.build.Entry` and `crl.selection.Revocation` both provide it."""

    @property
    def serial(self) -> int: ...

    @property
    def revoked_at(self) -> dt.datetime: ...

    @property
    def reason(self) -> str: ...


def utc(name: str, t: dt.datetime) -> dt.datetime:
    """`t` in UTC without fractions; naive datetimes are refused rather than guessed at."""
    if not isinstance(t, dt.datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise CrlError(f"{name} must be a timezone-aware datetime, got {t!r}", rule="RFC 5280 5.1.2.4: UTC")
    return t.astimezone(UTC).replace(microsecond=0)


def encode_time(t: dt.datetime) -> bytes:
    """DER Time of an aware datetime (RFC 5280 5.1.2.4).

    UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds, `Z`.
    """
    return der.time(utc("time", t))


def subject_der(cert: x509.Certificate) -> bytes:
    """The certificate's subject Name exactly as encoded in it (BR 7.2: CRL issuer byte-identical).

    Read from the TBSCertificate rather than re-encoded from the parsed Name, so that whatever
    string types and ordering the certificate used come through unchanged.
    """
    tbs = cert.tbs_certificate_bytes
    _, start, _ = der.read_tlv(tbs, 0)  # TBSCertificate SEQUENCE: step into its contents
    pos = start
    tag, start, end = der.read_tlv(tbs, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = end
    # serialNumber, signature, issuer, validity, then subject.
    for _ in range(4):
        _, _, pos = der.read_tlv(tbs, pos)
    tag, _, end = der.read_tlv(tbs, pos)
    if tag != 0x30:
        raise CrlError("issuer certificate has no subject Name", rule="RFC 5280 4.1.2.6")
    return tbs[pos:end]


def tbs_cert_list(
    *,
    issuer_name: bytes,
    key_id: bytes,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    revoked: bytes | bytearray,
    distribution_point: str | None = None,
) -> bytes:
    """The DER TBSCertList; `revoked` is the entries' DER concatenated, times are UTC.

    With `distribution_point` the CRL carries a critical issuingDistributionPoint naming that
    URL with onlyContainsUserCerts (RFC 5280 5.2.5): a partitioned CRL's scope.
    """
    extensions = der.tlv(
        0xA0,
        der.tlv(
            0x30,
            # authorityKeyIdentifier { [0] keyIdentifier } (RFC 5280 4.2.1.1, 5.2.1).
            der.extension(b"\x06\x03\x55\x1d\x23", der.tlv(0x30, der.tlv(0x80, key_id)))
            # cRLNumber INTEGER (RFC 5280 5.2.3).
            + der.extension(b"\x06\x03\x55\x1d\x14", der.integer(number))
            + (b"" if distribution_point is None else issuing_distribution_point(distribution_point)),
        ),
    )
    head = b"".join(
        (
            b"\x02\x01\x01",  # version v2 (RFC 5280 5.1.2.1: extensions are used)
            SHA256_WITH_RSA,
            issuer_name,
            der.time(this_update),
            der.time(next_update),
        )
    )
    # RFC 5280 5.1.2.6: with no entries the field is absent, not an empty SEQUENCE.
    revoked_header = der.header(0x30, len(revoked)) if revoked else b""
    body_length = len(head) + len(revoked_header) + len(revoked) + len(extensions)
    return b"".join((der.header(0x30, body_length), head, revoked_header, revoked, extensions))


def issuing_distribution_point(url: str) -> bytes:
    """The critical issuingDistributionPoint Extension: { distributionPoint fullName { URI },
    onlyContainsUserCerts TRUE } (RFC 5280 5.2.5; the CA/B Forum CRL profile, BR 7.2.2)."""
    uri = der.tlv(0x86, url.encode("ascii"))  # GeneralName uniformResourceIdentifier [6]
    full_name = der.tlv(0xA0, uri)  # DistributionPointName fullName [0] GeneralNames
    value = der.tlv(0x30, der.tlv(0xA0, full_name) + b"\x81\x01\xff")  # [0] point, [1] TRUE
    return der.tlv(0x30, b"\x06\x03\x55\x1d\x1c" + b"\x01\x01\xff" + der.tlv(0x04, value))


def certificate_list(tbs: bytes, signature: bytes) -> bytes:
    """The DER CertificateList of a TBSCertList and its sha256WithRSAEncryption signature."""
    tail = SHA256_WITH_RSA + der.tlv(0x03, b"\x00" + signature)
    return b"".join((der.header(0x30, len(tbs) + len(tail)), tbs, tail))


# --- entries -----------------------------------------------------------------------------------

_BYTE = [bytes((i,)) for i in range(256)]

# An entry is SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions }. Its
# first four octets (SEQUENCE tag and length, INTEGER tag and length) depend only on the serial's
# length `size` and on `rest` = len(date prefix) + len(extensions): the content is 2 + size octets
# of INTEGER, rest + 7 of Time ("HHMMSSZ") and extensions. It is always shorter than 128 octets
# (22 + 17 + 14), so the SEQUENCE length is one octet.
_ENTRY_HEADERS = [[bytes((0x30, 9 + size + rest, 0x02, size)) for rest in range(32)] for size in range(21)]


def _reason_extensions(allowed: frozenset[ReasonName]) -> dict[str, bytes]:
    """crlEntryExtensions bytes per allowed reason: empty for unspecified (BR 7.2.2 omits it)."""
    table: dict[str, bytes] = {}
    for name in allowed:
        code = CODES[name]
        if code == 0:
            table[name] = b""
        else:
            # Extensions { Extension { id-ce-cRLReasons, extnValue OCTET STRING { ENUMERATED } } };
            # non-critical, so the DEFAULT FALSE critical flag is left out (DER).
            extension = der.extension(b"\x06\x03\x55\x1d\x15", b"\x0a\x01" + _BYTE[code])
            table[name] = der.tlv(0x30, extension)
    return table


_REASON_EXTENSIONS = {
    False: _reason_extensions(SUBSCRIBER_REASONS),
    True: _reason_extensions(ARL_REASONS),
}


def encode_entries(entries: Iterable[EntryLike], this_update: dt.datetime, *, arl: bool) -> bytearray:
    """The concatenated DER of the revokedCertificates entries (without the outer SEQUENCE).

    `this_update` is UTC in whole seconds. Refuses (`CrlError`) a serial no certificate can have,
    a revocation after `this_update`, a reason not allowed on this kind of CRL and a serial twice.
    """
    reasons = _REASON_EXTENSIONS[arl]
    seconds = der.SECONDS_OF_DAY
    headers = _ENTRY_HEADERS
    limit_day = this_update.toordinal()
    limit_second = this_update.hour * 3600 + this_update.minute * 60 + this_update.second
    days: dict[int, bytes] = {}
    seen: set[int] = set()
    add_seen = seen.add
    out = bytearray()
    count = 0
    for entry in entries:
        serial = entry.serial
        # Octets of the minimal two's-complement encoding of a positive INTEGER.
        size = (serial.bit_length() + 8) >> 3
        if serial <= 0 or size > 20:
            raise CrlError(
                f"serial {serial} cannot belong to a certificate",
                rule="RFC 5280 4.1.2.2: positive, at most 20 octets",
            )
        t = entry.revoked_at
        if t.tzinfo is not UTC:
            t = utc("revoked_at", t)
        day = t.toordinal()
        second = t.hour * 3600 + t.minute * 60 + t.second
        if day >= limit_day and (day > limit_day or second > limit_second):
            raise CrlError(
                f"serial {serial:#x} was revoked at {t.isoformat()}, after thisUpdate {this_update.isoformat()}",
                rule="RFC 5280 5.1.2.6: revocationDate is not later than thisUpdate",
            )
        prefix = days.get(day)
        if prefix is None:
            prefix = days[day] = der.day_prefix(t)
        extension = reasons.get(entry.reason)
        if extension is None:
            raise _reason_error(serial, entry.reason, arl=arl)
        out += headers[size][len(prefix) + len(extension)]
        out += serial.to_bytes(size, "big")
        out += prefix
        out += seconds[second]
        out += extension
        add_seen(serial)
        count += 1
    if len(seen) != count:
        raise DuplicateSerialError(_first_duplicate(out))
    return out


def encode_entry(entry: EntryLike, *, arl: bool = False) -> bytes:
    """The DER of one revokedCertificates entry, exactly as `encode_entries` encodes it.

    For callers that keep entries between CRLs (`crl.entries.EntrySet`) and pass them to
    `crl.build.sign_crl`; checks the serial and the reason as `encode_entries` does, not the time
    against thisUpdate.
    """
    serial = entry.serial
    size = (serial.bit_length() + 8) >> 3
    if serial <= 0 or size > 20:
        raise CrlError(
            f"serial {serial} cannot belong to a certificate", rule="RFC 5280 4.1.2.2: positive, at most 20 octets"
        )
    t = entry.revoked_at
    if t.tzinfo is not UTC:
        t = utc("revoked_at", t)
    day = t.toordinal()
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        prefix = _DAY_PREFIXES[day] = der.day_prefix(t)
    extension = _REASON_EXTENSIONS[arl].get(entry.reason)
    if extension is None:
        raise _reason_error(serial, entry.reason, arl=arl)
    second = t.hour * 3600 + t.minute * 60 + t.second
    return b"".join(
        (
            _ENTRY_HEADERS[size][len(prefix) + len(extension)],
            serial.to_bytes(size, "big"),
            prefix,
            der.SECONDS_OF_DAY[second],
            extension,
        )
    )


# Day prefixes for `encode_entry` (one per distinct revocation day; a few thousand at most).
_DAY_PREFIXES: dict[int, bytes] = {}


def _reason_error(serial: int, reason: str, *, arl: bool) -> CrlError:
    rule = CRL_REFUSED.get(reason)
    if rule is None:
        if reason in CODES:
            allowed_names = ", ".join(sorted(ARL_REASONS if arl else SUBSCRIBER_REASONS))
            rule = f"BR 7.2.2: allowed reasons are {allowed_names}"
        else:
            rule = "RFC 5280 5.3.1: not a CRLReason name"
    return ProhibitedReasonError(serial, reason, rule=rule)


def _first_duplicate(revoked: bytearray) -> int:
    """Find a repeated serial by reading the encoded entries back (error path only)."""
    seen: set[int] = set()
    pos = 0
    while pos < len(revoked):
        _, start, end = der.read_tlv(revoked, pos)
        _, serial_start, serial_end = der.read_tlv(revoked, start)
        serial = int.from_bytes(revoked[serial_start:serial_end], "big")
        if serial in seen:
            return serial
        seen.add(serial)
        pos = end
    raise AssertionError("no duplicate serial found")
