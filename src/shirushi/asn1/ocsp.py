"""Build signed OCSP responses (RFC 6960 4.2, lightweight profile RFC 9919 3.2). Pure.

One SingleResponse per response, echoing the CertID hash algorithm of the request it answers
(HAProxy and Go reject more than one, OpenSSL-based staplers match on the algorithm); ResponderID
byKey (RFC 9919 3.2.2); the delegated signer certificate alone in `certs`; version v1 (omitted in
DER); nextUpdate always present; whole-second GeneralizedTime.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from shirushi.asn1.keys import certid_hashes
from shirushi.reasons import FLAGS
from shirushi.signing import Signer, SignerKey

HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}


@dataclasses.dataclass(frozen=True)
class IssuerHashes:
    """CertID issuer hashes of one issuing CA, for one hash algorithm."""

    alg: str
    name_hash: bytes
    key_hash: bytes

    @classmethod
    def of(cls, issuer: x509.Certificate, alg: str) -> IssuerHashes:
        return cls(alg, *certid_hashes(issuer, alg))


@dataclasses.dataclass(frozen=True)
class Status:
    """The status one response asserts. `revoked_at` None means good."""

    revoked_at: dt.datetime | None = None
    reason: str | None = None  # RFC 5280 name; None or "unspecified" = no reason field

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def build_response(
    *,
    issuer: IssuerHashes,
    serial: int,
    status: Status,
    this_update: dt.datetime,
    next_update: dt.datetime,
    signer_cert: x509.Certificate,
    signer: Signer,
) -> bytes:
    """Sign one successful BasicOCSPResponse and return the DER OCSPResponse."""
    reason = None
    if status.reason and status.reason != "unspecified":
        reason = FLAGS[status.reason]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=issuer.name_hash,
        issuer_key_hash=issuer.key_hash,
        serial_number=serial,
        algorithm=HASHES[issuer.alg](),
        cert_status=ocsp.OCSPCertStatus.REVOKED if status.is_revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=this_update,
        next_update=next_update,
        revocation_time=status.revoked_at,
        revocation_reason=reason,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    builder = builder.certificates([signer_cert])
    response = builder.sign(SignerKey(signer), hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)
