"""What an outside CA shows of its certificates: its index file, certificate files, its CRL.
Reads files and (for a CRL URL) fetches over HTTP with a timeout and a size bound.

Each turns its input into `Seen` items for `importer.run`. A bad index line or a certificate of
another CA is one problem line and the rest goes on; a CRL is taken whole or not at all (its
signature covers it whole).
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from shirushi.asn1.keys import spki_sha256
from shirushi.errors import InputError, PolicyError, ServiceError
from shirushi.outside import index
from shirushi.store.outside import Seen

MAX_CERT_BYTES = 1 << 20
MAX_CRL_BYTES = 64 << 20
FETCH_TIMEOUT = 15.0
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


def index_seen(path: str, problems: list[str]) -> Iterator[Seen]:
    """Stream `path` (an OpenSSL `ca` index), each bad line appended to `problems`."""
    try:
        # Opened here, closed by the `with` below: only the open's errors become InputErrors.
        fh = open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
    except FileNotFoundError:
        raise InputError(f"index {path}: no such file") from None
    except OSError as exc:
        raise InputError(f"cannot read index {path}: {exc.strerror}") from None
    with fh:
        for item in index.parse_index(fh):
            if isinstance(item, index.LineError):
                problems.append(f"{path}: {item}")
                continue
            yield Seen(item.serial, item.not_after, item.subject, item.revoked_at, item.reason)


def _cert_files(paths: Sequence[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES and p.is_file())
        else:
            yield path


def certs_seen(paths: Sequence[str], ca: x509.Certificate, name: str, problems: list[str]) -> Iterator[Seen]:
    """Certificates in these files or directories that `ca` issued; others are problems."""
    for path in _cert_files(paths):
        try:
            data = path.read_bytes()[: MAX_CERT_BYTES + 1]
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        try:
            certs = (
                x509.load_pem_x509_certificates(data)
                if b"-----BEGIN" in data
                else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            problems.append(f"{path}: not a PEM or DER certificate")
            continue
        for cert in certs:
            if cert.subject == ca.subject and cert.public_key() == ca.public_key():
                continue  # the CA's own certificate, as easy-rsa's bundles carry it
            try:
                cert.verify_directly_issued_by(ca)
            except Exception:
                problems.append(f"{path}: serial {cert.serial_number:X} was not issued by {name}; refused")
                continue
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                dns = tuple(san.get_values_for_type(x509.DNSName))
            except x509.ExtensionNotFound:
                dns = ()
            from cryptography.hazmat.primitives import serialization

            yield Seen(
                cert.serial_number,
                cert.not_valid_after_utc,
                cert.subject.rfc4514_string(),
                der=cert.public_bytes(serialization.Encoding.DER),
                not_before=cert.not_valid_before_utc,
                spki_sha256=spki_sha256(cert.public_key()),
                dns_names=dns,
            )


def read_crl(where: str) -> bytes:
    """A CRL from a file or an http(s) URL, size-bounded, with a timeout."""
    if where.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(where, timeout=FETCH_TIMEOUT) as response:
                data: bytes = response.read(MAX_CRL_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceError(f"cannot fetch CRL {where}: {getattr(exc, 'reason', exc)}") from None
    else:
        try:
            with open(where, "rb") as fh:
                data = fh.read(MAX_CRL_BYTES + 1)
        except FileNotFoundError:
            raise InputError(f"CRL {where}: no such file") from None
        except OSError as exc:
            raise InputError(f"cannot read CRL {where}: {exc.strerror}") from None
    if len(data) > MAX_CRL_BYTES:
        raise InputError(f"CRL {where} is larger than {MAX_CRL_BYTES} bytes")
    return data


def crl_seen(data: bytes, ca: x509.Certificate, name: str, where: str) -> tuple[int | None, dt.datetime, list[Seen]]:
    """(CRL number, thisUpdate, revoked entries) of a CRL whose signature `ca`'s key verifies."""
    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise InputError(f"CRL {where} is not a PEM or DER CRL") from None
    if crl.issuer != ca.subject:
        raise PolicyError(f"CRL {where} was issued by {crl.issuer.rfc4514_string()}, not by {name}; nothing changed")
    try:
        valid = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise PolicyError(f"CRL {where}: its signature does not verify with {name}'s key; nothing changed")
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None  # easy-rsa's gen-crl writes none: ordered by thisUpdate
    entries: list[Seen] = []
    for entry in crl:
        reason = "unspecified"
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            reason = flag.value
        except x509.ExtensionNotFound:
            pass
        if reason == "removeFromCRL":
            continue  # a delta CRL's un-hold: nothing to record from a full CRL
        entries.append(Seen(entry.serial_number, revoked_at=entry.revocation_date_utc, reason=reason))
    return number, crl.last_update_utc, entries
