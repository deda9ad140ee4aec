"""The issuers a responder answers for, and the Redis keys a CertID maps to.

`load_issuers` reads the PEM bundle (file I/O; `reload.py` adds the outside CAs and rereads
both); everything else is pure. The map
holds, per issuing CA and per CertID hash algorithm, the issuerNameHash and issuerKeyHash
(RFC 6960 4.1.1) precomputed, so a request costs one dictionary lookup (standards OCSP-11).

The hashes and the issuer id come from `shirushi.asn1.keys` (the subjectPublicKey BIT STRING
value, taken from the SubjectPublicKeyInfo DER so that any key type works); this module must not
import `shirushi.asn1.ocsp`, which pulls in the signing seam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from shirushi.asn1.keys import certid_hashes, issuer_id
from shirushi.cache import records
from shirushi.config import Settings
from shirushi.errors import ConfigError, StateError
from shirushi.responder.request import UNAUTHORIZED, CertID
from shirushi.responder.respwire import command


def issuers_path(settings: Settings) -> Path:
    """`ocsp.issuers`, or `{data_dir}/certs/issuers.pem` when empty."""
    if settings.ocsp.issuers:
        return Path(settings.ocsp.issuers).expanduser()
    return settings.layout.issuers_bundle


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Where the answer to one CertID lives in Redis (see `shirushi.cache.records`)."""

    key: bytes  # the response record
    get_command: bytes  # RESP-encoded `GET key`, prebuilt for the hot path
    complete_command: bytes  # RESP-encoded `GET` of the issuer's "full load finished" marker


class IssuerMap:
    """(alg, issuerNameHash, issuerKeyHash) -> issuer id, for the served CAs."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        # -> (the key before and after the serial, GET of the issuer's complete marker), built
        # once: a request only inserts its serial (records.response_key).
        self._ids: dict[tuple[str, bytes, bytes], tuple[bytes, bytes, bytes]] = {}
        self.names: list[str] = []
        for cert in certificates:
            issuer = issuer_id(cert)
            complete = command(b"GET", records.complete_key(issuer).encode())
            for alg in records.HASH_ALGORITHMS:
                before, after = records.response_key_parts(issuer, alg)
                self._ids[(alg, *certid_hashes(cert, alg))] = (before, after, complete)
            self.names.append(cert.subject.rfc4514_string())

    def __len__(self) -> int:
        return len(self.names)

    def plan(self, cert_id: CertID) -> Plan | int:
        """The Redis keys for `cert_id`, or UNAUTHORIZED for an issuer we do not serve."""
        found = self._ids.get((cert_id.alg, cert_id.name_hash, cert_id.key_hash))
        if found is None:
            # RFC 6960 2.3 / RFC 9919 3.2.3: not capable of responding authoritatively.
            return UNAUTHORIZED
        before, after, complete = found
        key = b"%s%x%s" % (before, cert_id.serial, after)  # records.response_key
        return Plan(key, b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key), complete)


def load_issuers(path: Path) -> IssuerMap:
    """Read the PEM bundle of issuing CA certificates; StateError/ConfigError when unusable."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"issuer certificates {path} do not exist; run `shirushi init` or set ocsp.issuers") from None
    except OSError as exc:
        raise StateError(f"cannot read issuer certificates {path}: {exc.strerror}") from None
    return IssuerMap(read_bundle(pem, path))


def read_bundle(pem: bytes, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"{path} is not a PEM bundle of certificates") from None
