"""Build signed CRLs (RFC 5280 5, BR 7.2) by encoding the DER directly. Pure: no I/O.

`build_crl` returns a complete DER CertificateList v2 signed through the `Signer` seam (which may
be an HSM). The output is what pyca/cryptography's `CertificateRevocationListBuilder` produces
for the same input (the tests compare them byte for byte), but it is built by hand because a CRL
can hold a million entries and the builder costs several microseconds of Python per entry. Here
each entry is one integer encoding, two table lookups and a few `bytearray` appends; the time
prefixes (tag, length, date) are memoized per day and the `HHMMSSZ` suffixes per second of day,
and the reasonCode extensions are constants.

Profile (BR 7.2, RFC 5280 5.1-5.3):
- version v2; signature and signatureAlgorithm both exactly `300d06092a864886f70d01010b0500`
  (sha256WithRSAEncryption with NULL parameters, BR 7.1.3.2.1);
- issuer = the issuing CA certificate's subject, byte for byte (BR 7.2);
- thisUpdate / nextUpdate / revocationDate: UTCTime through 2049, GeneralizedTime from 2050 and
  before 1950, whole seconds, `Z` (RFC 5280 5.1.2.4-5.1.2.6); fractions are dropped;
- revokedCertificates absent when there is nothing to list (RFC 5280 5.1.2.6);
- crlExtensions: authorityKeyIdentifier (keyIdentifier = the issuer's SKI, only) and cRLNumber,
  both non-critical (BR 7.2.2, RFC 5280 5.2.1, 5.2.3);
- an entry's only extension is a non-critical reasonCode, omitted for unspecified (BR 7.2.2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from shirushi.errors import PolicyError
from shirushi.signing import Signer

UTC = dt.UTC

# AlgorithmIdentifier { sha256WithRSAEncryption, NULL }, byte-identical as BR 7.1.3.2.1 demands.
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")

# RFC 5280 5.3.1 CRLReason values by their ASN.1 names (7 is unused).
REASON_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}

# BR 7.2.2: a subscriber CRL may carry only these reasons (unspecified as an omitted reasonCode);
# a CRL covering CA certificates (an ARL) may also say cACompromise.
SUBSCRIBER_REASONS = frozenset(
    {
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    }
)
ARL_REASONS = SUBSCRIBER_REASONS | {"cACompromise"}

# BR 7.2 (and Mozilla policy 6): nextUpdate at most 10 days after thisUpdate on a CRL for
# subscriber certificates, at most 12 months on a CA's CRL; 365 days is the stricter reading that
# pkilint checks.
MAX_CRL_VALIDITY = dt.timedelta(days=10)
MAX_ARL_VALIDITY = dt.timedelta(days=365)

# BR 7.2.2: 0 <= cRLNumber < 2^159 (at most 20 octets, RFC 5280 5.2.3).
MAX_CRL_NUMBER = 2**159

# RFC 5280 4.1.2.2: certificate serials are positive and at most 20 octets of DER, so below 2^159.
MAX_SERIAL = 2**159


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
    """What one CRL entry needs; `Entry` and `selection.Revocation` both provide it."""

    @property
    def serial(self) -> int: ...

    @property
    def revoked_at(self) -> dt.datetime: ...

    @property
    def reason(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One revoked certificate: its serial, revocation time and RFC 5280 reason name."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"


def build_crl(
    *,
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    entries: Iterable[EntryLike],
    arl: bool = False,
) -> bytes:
    """Sign and return a DER CRL v2 of `issuer` listing `entries` in the order given.

    `arl` is True for a CA's CRL covering CA certificates (the root's ARL): it allows the
    cACompromise reason and a nextUpdate up to 365 days away instead of 10. `entries` is consumed
    once, so a generator streaming from the store keeps memory low.

    Refuses with a `CrlError` subclass naming the rule: a reason not allowed here
    (`ProhibitedReasonError`; certificateHold and removeFromCRL always), a serial listed twice
    (`DuplicateSerialError`), a serial that no certificate can have, a revocation time after
    `this_update`, naive times, `next_update` not after `this_update` or too far, a CRL number out
    of range, an issuer without subjectKeyIdentifier or without the cRLSign key usage, or a signer
    whose key is not the issuer's.
    """
    this_update, next_update = _check_crl(issuer, signer, number, this_update, next_update, arl=arl)
    revoked = _encode_entries(entries, this_update, arl=arl)
    return _sign(issuer, signer, number, this_update, next_update, revoked)


def sign_crl(
    *,
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    revoked: bytes | bytearray,
    arl: bool = False,
) -> bytes:
    """Sign a CRL whose revokedCertificates content (the entries' DER, concatenated) is given.

    For callers that keep each entry's DER between CRLs (`encode_entry`): they answer for what
    `build_crl` checks per entry (no serial twice, revocation times not after `this_update`,
    reasons allowed on this kind of CRL); the CRL-level checks are made here as there.
    """
    this_update, next_update = _check_crl(issuer, signer, number, this_update, next_update, arl=arl)
    return _sign(issuer, signer, number, this_update, next_update, revoked)


def _check_crl(
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    *,
    arl: bool,
) -> tuple[dt.datetime, dt.datetime]:
    this_update = _utc("this_update", this_update)
    next_update = _utc("next_update", next_update)
    if next_update <= this_update:
        raise CrlError(
            "next_update must be later than this_update",
            rule="RFC 5280 5.1.2.5",
        )
    limit = MAX_ARL_VALIDITY if arl else MAX_CRL_VALIDITY
    if next_update - this_update > limit:
        raise CrlError(
            f"nextUpdate is {next_update - this_update} after thisUpdate; at most {limit} allowed",
            rule="BR 7.2",
        )
    if isinstance(number, bool) or not 0 <= number < MAX_CRL_NUMBER:
        raise CrlError(f"CRL number {number} is out of range", rule="BR 7.2.2: 0 <= cRLNumber < 2^159")
    _check_crl_sign(issuer)
    _check_signer(issuer, signer)
    return this_update, next_update


def _sign(
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    revoked: bytes | bytearray,
) -> bytes:
    issuer_name = subject_der(issuer)
    key_id = _subject_key_identifier(issuer)

    extensions = _tlv(
        0xA0,
        _tlv(
            0x30,
            # authorityKeyIdentifier { [0] keyIdentifier } (RFC 5280 4.2.1.1, 5.2.1).
            _extension(b"\x06\x03\x55\x1d\x23", _tlv(0x30, _tlv(0x80, key_id)))
            # cRLNumber INTEGER (RFC 5280 5.2.3).
            + _extension(b"\x06\x03\x55\x1d\x14", _integer(number)),
        ),
    )
    head = b"".join(
        (
            b"\x02\x01\x01",  # version v2 (RFC 5280 5.1.2.1: extensions are used)
            SHA256_WITH_RSA,
            issuer_name,
            encode_time(this_update),
            encode_time(next_update),
        )
    )
    # RFC 5280 5.1.2.6: with no entries the field is absent, not an empty SEQUENCE.
    revoked_header = _header(0x30, len(revoked)) if revoked else b""
    body_length = len(head) + len(revoked_header) + len(revoked) + len(extensions)
    tbs = b"".join((_header(0x30, body_length), head, revoked_header, revoked, extensions))
    del revoked  # the TBS holds a copy; let a large CRL's entry buffer go before signing

    signature = signer.sign(tbs)
    tail = SHA256_WITH_RSA + _tlv(0x03, b"\x00" + signature)
    return b"".join((_header(0x30, len(tbs) + len(tail)), tbs, tail))


def encode_time(t: dt.datetime) -> bytes:
    """DER Time of an aware datetime (RFC 5280 5.1.2.4).

    UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds, `Z`.
    """
    t = _utc("time", t)
    return _day_prefix(t) + _SECONDS_OF_DAY[t.hour * 3600 + t.minute * 60 + t.second]


def subject_der(cert: x509.Certificate) -> bytes:
    """The certificate's subject Name exactly as encoded in it (BR 7.2: CRL issuer byte-identical).

    Read from the TBSCertificate rather than re-encoded from the parsed Name, so that whatever
    string types and ordering the certificate used come through unchanged.
    """
    tbs = cert.tbs_certificate_bytes
    _, start, _ = _read_tlv(tbs, 0)  # TBSCertificate SEQUENCE: step into its contents
    pos = start
    tag, start, end = _read_tlv(tbs, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = end
    # serialNumber, signature, issuer, validity, then subject.
    for _ in range(4):
        _, _, pos = _read_tlv(tbs, pos)
    tag, _, end = _read_tlv(tbs, pos)
    if tag != 0x30:
        raise CrlError("issuer certificate has no subject Name", rule="RFC 5280 4.1.2.6")
    return tbs[pos:end]


# --- small DER helpers -------------------------------------------------------------------------


def _utc(name: str, t: dt.datetime) -> dt.datetime:
    """`t` in UTC without fractions; naive datetimes are refused rather than guessed at."""
    if not isinstance(t, dt.datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise CrlError(f"{name} must be a timezone-aware datetime, got {t!r}", rule="RFC 5280 5.1.2.4: UTC")
    return t.astimezone(UTC).replace(microsecond=0)


def _day_prefix(t: dt.datetime) -> bytes:
    """Tag, length and date part of a Time; the `HHMMSSZ` rest comes from `_SECONDS_OF_DAY`."""
    if 1950 <= t.year < 2050:
        return f"\x17\x0d{t.year % 100:02d}{t.month:02d}{t.day:02d}".encode()
    return f"\x18\x0f{t.year:04d}{t.month:02d}{t.day:02d}".encode()


def _header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return _header(tag, len(content)) + content


def _integer(value: int) -> bytes:
    """DER INTEGER of a non-negative int (minimal two's complement)."""
    return _tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def _extension(oid_der: bytes, value_der: bytes) -> bytes:
    """A non-critical Extension: the DEFAULT FALSE critical flag is omitted in DER."""
    return _tlv(0x30, oid_der + _tlv(0x04, value_der))


def _read_tlv(data: bytes | bytearray, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`; single-octet tags only."""
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    start = pos + 2 + count
    return tag, start, start + int.from_bytes(data[pos + 2 : start], "big")


# --- entries -----------------------------------------------------------------------------------

_BYTE = [bytes((i,)) for i in range(256)]

# An entry is SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions }. Its
# first four octets (SEQUENCE tag and length, INTEGER tag and length) depend only on the serial's
# length `size` and on `rest` = len(date prefix) + len(extensions): the content is 2 + size octets
# of INTEGER, rest + 7 of Time ("HHMMSSZ") and extensions. It is always shorter than 128 octets
# (22 + 17 + 14), so the SEQUENCE length is one octet.
_ENTRY_HEADERS = [[bytes((0x30, 9 + size + rest, 0x02, size)) for rest in range(32)] for size in range(21)]

# "HHMMSSZ" for every second of a day.
_SECONDS_OF_DAY = [f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}Z".encode() for s in range(86400)]


def _reason_extensions(allowed: frozenset[str]) -> dict[str, bytes]:
    """crlEntryExtensions bytes per allowed reason: empty for unspecified (BR 7.2.2 omits it)."""
    table: dict[str, bytes] = {}
    for name in allowed:
        code = REASON_CODES[name]
        if code == 0:
            table[name] = b""
        else:
            # Extensions { Extension { id-ce-cRLReasons, extnValue OCTET STRING { ENUMERATED } } };
            # non-critical, so the DEFAULT FALSE critical flag is left out (DER).
            extension = _extension(b"\x06\x03\x55\x1d\x15", b"\x0a\x01" + _BYTE[code])
            table[name] = _tlv(0x30, extension)
    return table


_REASON_EXTENSIONS = {
    False: _reason_extensions(SUBSCRIBER_REASONS),
    True: _reason_extensions(ARL_REASONS),
}


def _encode_entries(entries: Iterable[EntryLike], this_update: dt.datetime, *, arl: bool) -> bytearray:
    """The concatenated DER of the revokedCertificates entries (without the outer SEQUENCE)."""
    reasons = _REASON_EXTENSIONS[arl]
    seconds = _SECONDS_OF_DAY
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
            t = _utc("revoked_at", t)
        day = t.toordinal()
        second = t.hour * 3600 + t.minute * 60 + t.second
        if day >= limit_day and (day > limit_day or second > limit_second):
            raise CrlError(
                f"serial {serial:#x} was revoked at {t.isoformat()}, after thisUpdate {this_update.isoformat()}",
                rule="RFC 5280 5.1.2.6: revocationDate is not later than thisUpdate",
            )
        prefix = days.get(day)
        if prefix is None:
            prefix = days[day] = _day_prefix(t)
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
    """The DER of one revokedCertificates entry, exactly as `build_crl` encodes it.

    For callers that keep entries between CRLs (`entries.EntrySet`) and pass them to `sign_crl`;
    checks the serial and the reason as `build_crl` does, not the time against thisUpdate.
    """
    serial = entry.serial
    size = (serial.bit_length() + 8) >> 3
    if serial <= 0 or size > 20:
        raise CrlError(
            f"serial {serial} cannot belong to a certificate", rule="RFC 5280 4.1.2.2: positive, at most 20 octets"
        )
    t = entry.revoked_at
    if t.tzinfo is not UTC:
        t = _utc("revoked_at", t)
    day = t.toordinal()
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        prefix = _DAY_PREFIXES[day] = _day_prefix(t)
    extension = _REASON_EXTENSIONS[arl].get(entry.reason)
    if extension is None:
        raise _reason_error(serial, entry.reason, arl=arl)
    second = t.hour * 3600 + t.minute * 60 + t.second
    return b"".join(
        (
            _ENTRY_HEADERS[size][len(prefix) + len(extension)],
            serial.to_bytes(size, "big"),
            prefix,
            _SECONDS_OF_DAY[second],
            extension,
        )
    )


# Day prefixes for `encode_entry` (one per distinct revocation day; a few thousand at most).
_DAY_PREFIXES: dict[int, bytes] = {}


def _reason_error(serial: int, reason: str, *, arl: bool) -> CrlError:
    if reason == "certificateHold":
        rule = "BR 7.2.2, 4.9.13: certificateHold MUST NOT be used (no suspension, policy 4.9.13)"
    elif reason == "removeFromCRL":
        rule = "RFC 5280 5.3.1: removeFromCRL only belongs in delta CRLs, which BR 7.2 excludes"
    elif reason == "cACompromise":
        rule = "BR 7.2.2: cACompromise only on a CRL covering CA certificates (ARL)"
    elif reason in REASON_CODES:
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
        _, start, end = _read_tlv(revoked, pos)
        _, serial_start, serial_end = _read_tlv(revoked, start)
        serial = int.from_bytes(revoked[serial_start:serial_end], "big")
        if serial in seen:
            return serial
        seen.add(serial)
        pos = end
    raise AssertionError("no duplicate serial found")


# --- checks on the issuer and signer -----------------------------------------------------------


def _subject_key_identifier(issuer: x509.Certificate) -> bytes:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise CrlError(
            "issuer certificate has no subjectKeyIdentifier for the CRL's authorityKeyIdentifier",
            rule="RFC 5280 5.2.1, BR 7.2.2",
        ) from None
    return ski.value.digest


def _check_crl_sign(issuer: x509.Certificate) -> None:
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.crl_sign:
        raise CrlError("issuer certificate's keyUsage lacks cRLSign", rule="RFC 5280 4.2.1.3")


def _check_signer(issuer: x509.Certificate, signer: Signer) -> None:
    """Refuse to sign with a key that is not the issuer's: relying parties could not verify it."""
    issuer_key = issuer.public_key()
    signer_key = signer.public_key()
    if not (isinstance(issuer_key, rsa.RSAPublicKey) and issuer_key.public_numbers() == signer_key.public_numbers()):
        raise CrlError(
            f"signer {signer.label} does not hold the issuer certificate's key",
            rule="RFC 5280 5.1.1.3: the CRL is signed by its issuer",
        )
