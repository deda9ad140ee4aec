"""`shirushi staple`: fetch, check and write OCSP responses for TLS servers to staple (RFC 6066 8).

For nginx `ssl_stapling_file` and HAProxy's `<cert>.ocsp`. The issuer comes from the certificate
file (a chain), `--issuer`, or is looked up (issuer_lookup: the local CA, the AIA caIssuers URL).
The response is fetched over HTTP from
the certificate's AIA OCSP URL (or `--url`) with a SHA-1 CertID (what nginx and HAProxy match on),
checked (successful, one SingleResponse for this certificate, signature by the issuer or its
delegated responder, nextUpdate present and ahead) and written atomically, so a web server
reloading at any moment reads a whole, valid file. Does network and file I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from shirushi.ca.hierarchy import ISSUING, CertificatePaths
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError
from shirushi.files import write_atomic
from shirushi.issuer_lookup import find_issuer, is_issuer, local_certificates

TIMEOUT = 10.0
HOOK_TIMEOUT = 60.0
MAX_RESPONSE = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Stapled:
    path: Path
    status: str
    next_update: dt.datetime


def load_chain(path: Path) -> tuple[x509.Certificate, x509.Certificate | None]:
    """The leaf and, if the file holds a chain, its issuer."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read certificate file {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise InputError(f"{path} holds no PEM or DER certificate") from None
    leaf = certs[0]
    issuer = next((c for c in certs[1:] if is_issuer(leaf, c)), None)
    return leaf, issuer


def ocsp_url(cert: x509.Certificate) -> str:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        raise InputError("the certificate has no AIA extension; give --url") from None
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.OCSP:
            return str(desc.access_location.value)
    raise InputError("the certificate names no OCSP responder; give --url")


def _verify_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    signer = issuer
    for cert in response.certificates:
        # RFC 6960 4.2.2.2: a delegate must be issued by the CA and carry id-kp-OCSPSigning.
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            cert.verify_directly_issued_by(issuer)
        except (x509.ExtensionNotFound, InvalidSignature, ValueError, TypeError):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            signer = cert
            break
    key = signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or response.signature_hash_algorithm is None:
        raise ServiceError("OCSP response is not signed with RSA")
    try:
        key.verify(
            response.signature, response.tbs_response_bytes, padding.PKCS1v15(), response.signature_hash_algorithm
        )
    except InvalidSignature:
        raise ServiceError("OCSP response signature does not verify against the issuer or its responder") from None


def fetch(
    cert: x509.Certificate, issuer: x509.Certificate, url: str, now: dt.datetime
) -> tuple[bytes, ocsp.OCSPResponse]:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    body = request.public_bytes(serialization.Encoding.DER)
    http = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/ocsp-request"})
    try:
        with urllib.request.urlopen(http, timeout=TIMEOUT) as answer:
            der = answer.read(MAX_RESPONSE + 1)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ServiceError(f"OCSP responder {url} unreachable: {exc}") from None
    if len(der) > MAX_RESPONSE:
        raise ServiceError("OCSP response too large")
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError:
        raise ServiceError(f"OCSP responder {url} sent something that is not an OCSP response") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ServiceError(f"OCSP responder answered {response.response_status.name}")
    if response.serial_number != cert.serial_number:
        raise ServiceError("OCSP response is for another certificate")
    if response.next_update_utc is None or response.next_update_utc <= now:
        raise ServiceError("OCSP response has no nextUpdate or is expired")
    _verify_signature(response, issuer)
    return der, response


def local_ca_issuers(settings: Settings) -> list[x509.Certificate]:
    """The CA certificates in the configuration's data_dir (none when it holds no CA)."""
    paths = CertificatePaths(settings.data_path)
    bundle = Path(settings.ocsp.issuers) if settings.ocsp.issuers else paths.issuers_bundle
    return local_certificates([bundle, paths.cert(ISSUING)])


def staple_one(
    cert_path: Path,
    out: Path,
    *,
    issuer_path: Path | None,
    url: str | None,
    now: Callable[[], dt.datetime],
    local_issuers: Sequence[x509.Certificate] = (),
) -> Stapled:
    """`local_issuers`: the local CA's certificates, tried before the caIssuers URL."""
    leaf, issuer = load_chain(cert_path)
    if issuer_path is not None:
        issuer, _ = load_chain(issuer_path)
        if not is_issuer(leaf, issuer):
            raise InputError(f"{issuer_path} did not issue {cert_path} (subject or signature does not match)")
    if issuer is None:
        issuer = find_issuer(leaf, str(cert_path), local=local_issuers)
    der, response = fetch(leaf, issuer, url or ocsp_url(leaf), now())
    write_atomic(out, der)
    assert response.next_update_utc is not None
    return Stapled(out, response.certificate_status.name.lower(), response.next_update_utc)


def staple_dir(
    directory: Path,
    *,
    url: str | None,
    now: Callable[[], dt.datetime],
    say: Callable[[str], None],
    local_issuers: Sequence[x509.Certificate] = (),
) -> int:
    """Every `NAME.pem` (leaf + chain) in `directory` gets `NAME.pem.ocsp` (HAProxy's naming)."""
    failures = 0
    for cert_path in sorted(directory.glob("*.pem")):
        try:
            result = staple_one(
                cert_path,
                cert_path.with_name(cert_path.name + ".ocsp"),
                issuer_path=None,
                url=url,
                now=now,
                local_issuers=local_issuers,
            )
            say(f"{result.path}: {result.status}, nextUpdate {result.next_update:%Y-%m-%dT%H:%M:%SZ}")
        except (InputError, ServiceError) as exc:
            failures += 1
            say(f"{cert_path}: error: {exc}")
    return failures


def run_hook(command: str, say: Callable[[str], None]) -> None:
    """Run the operator's `--then` command (e.g. `nginx -s reload`): nginx reads
    `ssl_stapling_file` and HAProxy its `.ocsp` files only when they load their configuration."""
    try:
        result = subprocess.run(command, shell=True, timeout=HOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        say(f"--then command timed out after {HOOK_TIMEOUT:.0f} s")
        return
    if result.returncode != 0:
        say(f"--then command exited with status {result.returncode}")


def refresh_forever(run: Callable[[], int], every: dt.timedelta, say: Callable[[str], None]) -> NoReturn:
    """Run `run` now and then every `every`; failures are retried within 5 minutes."""
    while True:
        failures = run()
        # Retry failures sooner, as nginx does (5 minutes).
        delay = min(every.total_seconds(), 300) if failures else every.total_seconds()
        say(f"next refresh in {int(delay)} s")
        time.sleep(delay)
