"""Build signed OCSP responses (RFC 6960 4.2, lightweight profile RFC 9919 3.2). Pure.

One SingleResponse per response, echoing the CertID hash algorithm of the request it answers
(HAProxy and Go reject more than one, OpenSSL-based staplers match on the algorithm); ResponderID
byKey (RFC 9919 3.2.2); the delegated signer certificate alone in `certs`; version v1 (omitted in
DER); nextUpdate always present; whole-second GeneralizedTime; no extensions (no nonce: RFC 9919
3.2.3). The DER is written here, around the signer's signature, rather than by pyca's
OCSPResponseBuilder: the builder re-encodes the signer certificate and walks Python key objects
for every response, which cost more than an ECDSA P-256 signature itself (bench/RESULTS.md,
"Signing throughput"). tests/test_ocsp_build.py holds the output byte for byte to the builder's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shirushi.asn1.der import integer, tlv
from shirushi.asn1.keys import certid_hashes, key_identifier
from shirushi.reasons import CODES
from shirushi.signing import Signer


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


# AlgorithmIdentifiers as pyca writes them: the CertID hashes with NULL parameters (RFC 6960
# 4.1.1 via RFC 5754 2), sha256WithRSAEncryption with NULL (RFC 4055 5), ecdsa-with-SHA256 without
# parameters (RFC 5758 3.2).
_CERTID_HASH = {
    "sha1": bytes.fromhex("300906052b0e03021a0500"),
    "sha256": bytes.fromhex("300d06096086480165030402010500"),
}
_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
# responseStatus successful (0), then [0] EXPLICIT ResponseBytes with id-pkix-ocsp-basic.
_SUCCESSFUL = bytes.fromhex("0a0100")
_OCSP_BASIC = bytes.fromhex("06092b0601050507300101")
_GOOD = bytes.fromhex("8000")  # [0] IMPLICIT NULL
_REASON_CODES: dict[str, int] = {name: code for name, code in CODES.items()}


def _generalized_time(t: dt.datetime) -> bytes:
    """GeneralizedTime "YYYYMMDDHHMMSSZ" of an aware UTC datetime (RFC 6960 4.2.2.1)."""
    t = t.astimezone(dt.UTC)
    return tlv(0x18, f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}Z".encode())


@dataclasses.dataclass(frozen=True)
class _SignerParts:
    responder_id: bytes  # [1] responderID byKey: [2] EXPLICIT KeyHash (SHA-1 of the public key bits)
    algorithm: bytes  # signatureAlgorithm
    certs: bytes  # [0] EXPLICIT SEQUENCE OF Certificate: the signer certificate alone


@functools.lru_cache(maxsize=16)
def _signer_parts(signer_cert: x509.Certificate) -> _SignerParts:
    algorithm = (
        _ECDSA_WITH_SHA256 if isinstance(signer_cert.public_key(), ec.EllipticCurvePublicKey) else _SHA256_WITH_RSA
    )
    return _SignerParts(
        responder_id=tlv(0xA2, tlv(0x04, key_identifier(signer_cert))),
        algorithm=algorithm,
        certs=tlv(0xA0, tlv(0x30, signer_cert.public_bytes(serialization.Encoding.DER))),
    )


def _cert_status(status: Status) -> bytes:
    if status.revoked_at is None:
        return _GOOD
    # RevokedInfo: revocationTime, [0] EXPLICIT CRLReason unless there is none to give
    # (unspecified is given by leaving it out: RFC 5280 5.3.1, BR 7.2.2).
    content = _generalized_time(status.revoked_at)
    if status.reason and status.reason != "unspecified":
        content += tlv(0xA0, tlv(0x0A, bytes((_REASON_CODES[status.reason],))))
    return tlv(0xA1, content)


def build_response(
    *,
    issuer: IssuerHashes,
    serial: int,
    status: Status,
    this_update: dt.datetime,
    next_update: dt.datetime,
    produced_at: dt.datetime,
    signer_cert: x509.Certificate,
    signer: Signer,
) -> bytes:
    """Sign one successful BasicOCSPResponse and return the DER OCSPResponse."""
    parts = _signer_parts(signer_cert)
    cert_id = tlv(
        0x30,
        _CERTID_HASH[issuer.alg] + tlv(0x04, issuer.name_hash) + tlv(0x04, issuer.key_hash) + integer(serial),
    )
    single = tlv(
        0x30,
        cert_id + _cert_status(status) + _generalized_time(this_update) + tlv(0xA0, _generalized_time(next_update)),
    )
    tbs = tlv(0x30, parts.responder_id + _generalized_time(produced_at) + tlv(0x30, single))
    signature = tlv(0x03, b"\x00" + signer.sign(tbs))
    basic = tlv(0x30, tbs + parts.algorithm + signature + parts.certs)
    return tlv(0x30, _SUCCESSFUL + tlv(0xA0, tlv(0x30, _OCSP_BASIC + tlv(0x04, basic))))
