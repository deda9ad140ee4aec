"""Build signed CRLs (RFC 5280 5, BR 7.2): the CRL-level checks and the signature. Pure: no I/O.

`build_crl` returns a complete DER CertificateList v2 signed through the `Signer` seam (which may
be an HSM); the DER itself is encoded by `shirushi.asn1.crl`. Profile beyond the encoding:
- issuer = the issuing CA certificate's subject, byte for byte (BR 7.2);
- authorityKeyIdentifier = the issuer's subjectKeyIdentifier (BR 7.2.2, RFC 5280 5.2.1);
- nextUpdate at most 10 days after thisUpdate, 365 days on an ARL (BR 7.2);
- cRLNumber in 0 .. 2^159 - 1 (BR 7.2.2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from shirushi.asn1.crl import (
    CrlError,
    EntryLike,
    certificate_list,
    encode_entries,
    subject_der,
    tbs_cert_list,
    utc,
)
from shirushi.signing import Signer

# BR 7.2 (and Mozilla policy 6): nextUpdate at most 10 days after thisUpdate on a CRL for
# subscriber certificates, at most 12 months on a CA's CRL; 365 days is the stricter reading that
# pkilint checks.
MAX_CRL_VALIDITY = dt.timedelta(days=10)
MAX_ARL_VALIDITY = dt.timedelta(days=365)

# BR 7.2.2: 0 <= cRLNumber < 2^159 (at most 20 octets, RFC 5280 5.2.3).
MAX_CRL_NUMBER = 2**159


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
    distribution_point: str | None = None,
) -> bytes:
    """Sign and return a DER CRL v2 of `issuer` listing `entries` in the order given.

    `arl` is True for a CA's CRL covering CA certificates (the root's ARL): it allows the
    cACompromise reason and a nextUpdate up to 365 days away instead of 10. `entries` is consumed
    once, so a generator streaming from the store keeps memory low. `distribution_point` is the
    URL the certificates in this CRL's scope name: it adds a critical issuingDistributionPoint
    with that URL and onlyContainsUserCerts (a shard of partitioned CRLs, `shards.py`).

    Refuses with a `CrlError` subclass naming the rule: a reason not allowed here
    (`ProhibitedReasonError`; certificateHold and removeFromCRL always), a serial listed twice
    (`DuplicateSerialError`), a serial that no certificate can have, a revocation time after
    `this_update`, naive times, `next_update` not after `this_update` or too far, a CRL number out
    of range, an issuer without subjectKeyIdentifier or without the cRLSign key usage, or a signer
    whose key is not the issuer's.
    """
    this_update, next_update = _check_crl(issuer, signer, number, this_update, next_update, arl=arl)
    revoked = encode_entries(entries, this_update, arl=arl)
    return _sign(issuer, signer, number, this_update, next_update, revoked, distribution_point)


def sign_crl(
    *,
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    revoked: bytes | bytearray,
    arl: bool = False,
    distribution_point: str | None = None,
) -> bytes:
    """Sign a CRL whose revokedCertificates content (the entries' DER, concatenated) is given.

    For callers that keep each entry's DER between CRLs (`asn1.crl.encode_entry`): they answer for
    what `build_crl` checks per entry (no serial twice, revocation times not after `this_update`,
    reasons allowed on this kind of CRL); the CRL-level checks are made here as there.
    """
    this_update, next_update = _check_crl(issuer, signer, number, this_update, next_update, arl=arl)
    return _sign(issuer, signer, number, this_update, next_update, revoked, distribution_point)


def _check_crl(
    issuer: x509.Certificate,
    signer: Signer,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    *,
    arl: bool,
) -> tuple[dt.datetime, dt.datetime]:
    this_update = utc("this_update", this_update)
    next_update = utc("next_update", next_update)
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
    distribution_point: str | None,
) -> bytes:
    tbs = tbs_cert_list(
        issuer_name=subject_der(issuer),
        key_id=_subject_key_identifier(issuer),
        number=number,
        this_update=this_update,
        next_update=next_update,
        revoked=revoked,
        distribution_point=distribution_point,
    )
    del revoked  # the TBS holds a copy; let a large CRL's entry buffer go before signing
    return certificate_list(tbs, signer.sign(tbs))


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
