"""Finding a certificate's issuer when only the leaf is at hand (for `shirushi staple`).

An OCSP request names the issuer (RFC 6960 4.1.1: hashes of its name and key), so a stapler needs
the issuing CA certificate. A TLS server admin often has only the leaf; like a browser, look it
up: first in the local CA's certificates (`{data_dir}/certs`, when run with the CA's
configuration), then at the certificate's AIA caIssuers URL (RFC 5280 4.2.2.1). The fetch is
bounded: http:// only (BR 7.1.2.7.7), a size cap, one deadline for the whole transfer. Whatever is
found is used only if it really issued the certificate: its subject is the certificate's issuer
name and the certificate's signature verifies with its key. Does file and network I/O.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID

from shirushi.errors import InputError, ServiceError

FETCH_TIMEOUT = 10.0  # seconds for the whole transfer, redirects included
MAX_ISSUER_BYTES = 64 * 1024  # a CA certificate is 1-2 KiB; a PKCS#7 bundle of a few stays far below
_CHUNK = 4096


def is_issuer(cert: x509.Certificate, candidate: x509.Certificate) -> bool:
    """True when `candidate` issued `cert`: names match and the signature verifies."""
    if candidate.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(candidate)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM (one or more), DER, or a DER PKCS#7 certs-only bundle (RFC 5280 4.2.2.1); [] if none."""
    loaders = (
        (x509.load_pem_x509_certificates,)
        if b"-----BEGIN" in data
        else (lambda d: [x509.load_der_x509_certificate(d)], pkcs7.load_der_pkcs7_certificates)
    )
    for load in loaders:
        try:
            return list(load(data))
        except ValueError:
            continue
    return []


def local_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    """The CA certificates in these files; missing or unreadable files give none."""
    found: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found.extend(parse_certificates(data))
    return found


def ca_issuers_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


class _HTTPOnlyRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not newurl.lower().startswith("http://"):
            raise ServiceError(f"caIssuers URL {req.full_url} redirects to {newurl}, which is not http://")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    # No HTTPS, FTP, file or data handlers, and redirects only to http://.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        _HTTPOnlyRedirect(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def download(url: str, *, timeout: float = FETCH_TIMEOUT, limit: int = MAX_ISSUER_BYTES) -> bytes:
    """GET `url` (http:// only) within `timeout` seconds and `limit` bytes; ServiceError otherwise."""
    if not url.lower().startswith("http://"):
        raise ServiceError(f"caIssuers URL {url} is not http:// (BR 7.1.2.7.7)")
    deadline = time.monotonic() + timeout
    try:
        with _opener().open(url, timeout=timeout) as answer:
            length = answer.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ServiceError(f"caIssuers URL {url} sent {length} bytes; at most {limit} are accepted")
            body = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise ServiceError(f"caIssuers URL {url} took longer than {timeout:.0f} s")
                chunk = answer.read1(_CHUNK)  # one recv: a peer dripping bytes meets the deadline
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > limit:
                    raise ServiceError(f"caIssuers URL {url} sent more than {limit} bytes")
    except urllib.error.HTTPError as exc:
        raise ServiceError(f"caIssuers URL {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ServiceError(f"caIssuers URL {url} unreachable: {reason}") from None


def fetch_issuer(cert: x509.Certificate, *, timeout: float = FETCH_TIMEOUT) -> x509.Certificate | None:
    """The issuer from the certificate's caIssuers URLs; None if it names none.

    ServiceError when a URL was tried and gave nothing usable (the last reason is kept)."""
    urls = ca_issuers_urls(cert)
    if not urls:
        return None
    failure = ""
    for url in urls:
        try:
            found = parse_certificates(download(url, timeout=timeout))
        except ServiceError as exc:
            failure = str(exc)
            continue
        issuer = next((c for c in found if is_issuer(cert, c)), None)
        if issuer is not None:
            return issuer
        failure = (
            f"caIssuers URL {url} holds no certificate that issued this one (subject or signature does not match)"
            if found
            else f"caIssuers URL {url} sent no PEM, DER or PKCS#7 certificate"
        )
    raise ServiceError(failure)


def find_issuer(
    cert: x509.Certificate, name: str, *, local: Sequence[x509.Certificate], timeout: float = FETCH_TIMEOUT
) -> x509.Certificate:
    """The issuer from the local CA's certificates, else from the caIssuers URL (`name` is the
    certificate's file, for messages)."""
    issuer = next((c for c in local if is_issuer(cert, c)), None)
    if issuer is None:
        issuer = fetch_issuer(cert, timeout=timeout)
    if issuer is None:
        raise InputError(
            f"{name} holds no issuer certificate, the local CA did not issue it and it names no caIssuers "
            "URL: give --issuer or a chain file"
        )
    return issuer
