"""The certificate authority's use cases: initialise the hierarchy, issue, renew the OCSP signer.

Orchestration only: profiles, CSR rules and validity are pure modules; keys are reached through
the KeyStore/Signer seam; records go to the Store; files go to `{data_dir}/certs`. Does I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shirushi.asn1.keys import IssuerId, issuer_id, spki_sha256
from shirushi.ca import csr as csr_rules
from shirushi.ca import lint, names, profiles, validity
from shirushi.clock import Clock
from shirushi.config import Settings, parse_duration
from shirushi.errors import ConflictError, PolicyError, StateError
from shirushi.serials import serial_text
from shirushi.signing import KeyStore, Signer, SignerKey
from shirushi.store import CertificateRecord, Store

log = logging.getLogger("shirushi.ca")

ROOT, ISSUING, OCSP_SIGNER = "root", "issuing-ca", "ocsp-signer"


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so readers see the old or the new content, never a part, even after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """The CA certificates currently in use."""

    root: x509.Certificate
    issuing: x509.Certificate
    ocsp_signer: x509.Certificate

    @property
    def issuing_id(self) -> IssuerId:
        return issuer_id(self.issuing)

    @property
    def root_id(self) -> IssuerId:
        return issuer_id(self.root)


@dataclasses.dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    record: CertificateRecord
    warnings: list[str]


class CertificatePaths:
    """Where the CA certificates live in data_dir (public material only)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "certs"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    @property
    def issuers_bundle(self) -> Path:
        """Issuing CA certificates served by the responder (`ocsp.issuers` default)."""
        return self.directory / "issuers.pem"

    def load(self, name: str) -> x509.Certificate | None:
        try:
            return x509.load_pem_x509_certificate(self.cert(name).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, name: str, cert: x509.Certificate) -> None:
        write_atomic(self.cert(name), pem(cert).encode())

    def stamp(self) -> tuple[tuple[int, int, int], ...] | None:
        """Identity of the current CA certificate files (None when one is missing)."""
        try:
            stats = [self.cert(n).stat() for n in (ROOT, ISSUING, OCSP_SIGNER)]
        except FileNotFoundError:
            return None
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def load_hierarchy(settings: Settings) -> Hierarchy:
    paths = CertificatePaths(settings.data_path)
    root, issuing, signer = (paths.load(n) for n in (ROOT, ISSUING, OCSP_SIGNER))
    if root is None or issuing is None or signer is None:
        raise StateError(f"the CA is not initialised in {settings.data_path}: run `shirushi init`")
    return Hierarchy(root, issuing, signer)


class Authority:
    """Issues certificates with the issuing CA key; initialises the hierarchy."""

    def __init__(self, settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.paths = CertificatePaths(settings.data_path)
        self.urls = profiles.URLs(
            ocsp=settings.ocsp.url,
            repository=settings.repository.url
            if settings.repository.url.endswith("/")
            else settings.repository.url + "/",
            cps=settings.ca.cps_uri,
        )
        # Called with each newly stored certificate (presigning hooks in here).
        self.on_issued: list[Callable[[CertificateRecord], None]] = []
        # Pre-issuance lint: in this process, or a LintPool's workers (`serve`).
        self.linter: lint.LintFunction = lint.lint_der
        self._hierarchy: tuple[object, Hierarchy] | None = None
        self._issuing: tuple[x509.Certificate, Signer] | None = None

    def hierarchy(self) -> Hierarchy:
        """`load_hierarchy`, read again only when a certificate file was replaced (renewal)."""
        stamp = self.paths.stamp()
        cached = self._hierarchy
        if stamp is None or cached is None or cached[0] != stamp:
            cached = self._hierarchy = (stamp, load_hierarchy(self.settings))
        return cached[1]

    def _issuing_signer(self, hierarchy: Hierarchy) -> Signer:
        """The issuing CA key, opened (and checked against its certificate) once per process.

        Opening a key file parses and validates the RSA key (tens of ms); an HSM key is a
        token lookup. Neither changes while the certificate stays the same.
        """
        cached = self._issuing
        if cached is not None and cached[0] == hierarchy.issuing:
            return cached[1]
        signer = self.keys.open(ISSUING)
        self._check_pair(hierarchy.issuing, signer, ISSUING)
        self._issuing = (hierarchy.issuing, signer)
        return signer

    # -- init -----------------------------------------------------------------------------

    def _key(self, name: str) -> tuple[Signer, bool]:
        if self.keys.exists(name):
            return self.keys.open(name), False
        return self.keys.generate(name), True

    def init(self) -> list[str]:
        """Create what is missing: keys, root, issuing CA, OCSP signer, issuer records.

        Existing keys and certificates are kept; returns a line per thing created.
        """
        done: list[str] = []
        now = self.clock.now()
        ca = self.settings.ca

        root = self.paths.load(ROOT)
        root_signer, created = self._key(ROOT)
        if created:
            done.append(f"created root key ({root_signer.label})")
        if root is None:
            subject = names.parse_name(ca.root_subject)
            builder = profiles.root_ca(
                subject=subject,
                public_key=root_signer.public_key(),
                serial=x509.random_serial_number(),
                not_before=now,
                not_after=now + dt.timedelta(days=ca.root_validity_days),
            )
            lint.lint_builder(builder, "ROOT-CA", allow_local_urls=ca.lint_allow_local_urls)
            root = builder.sign(SignerKey(root_signer), hashes.SHA256())
            self.paths.save(ROOT, root)
            done.append(f"created root CA certificate: {ca.root_subject}")
        self._check_pair(root, root_signer, ROOT)

        issuing = self.paths.load(ISSUING)
        issuing_signer, created = self._key(ISSUING)
        if created:
            done.append(f"created issuing CA key ({issuing_signer.label})")
        if issuing is None:
            not_after = min(now + dt.timedelta(days=ca.validity_days), root.not_valid_after_utc)
            builder = profiles.issuing_ca(
                subject=names.parse_name(ca.subject),
                public_key=issuing_signer.public_key(),
                root=root,
                serial=x509.random_serial_number(),
                not_before=now,
                not_after=not_after,
                urls=self.urls,
                policy_oid=ca.policy_oid,
            )
            lint.lint_builder(builder, "EXTERNAL-UNCONSTRAINED-TLS-CA", allow_local_urls=ca.lint_allow_local_urls)
            issuing = builder.sign(SignerKey(root_signer), hashes.SHA256())
            self.paths.save(ISSUING, issuing)
            done.append(f"created issuing CA certificate: {ca.subject}")
        self._check_pair(issuing, issuing_signer, ISSUING)

        root_id = issuer_id(root)
        issuing_id = issuer_id(issuing)
        known = {row.id for row in self.store.issuers()}
        if root_id not in known:
            self.store.add_issuer(root_id, ROOT, root.subject.rfc4514_string(), _der(root), now)
        if issuing_id not in known:
            self.store.add_issuer(issuing_id, ISSUING, issuing.subject.rfc4514_string(), _der(issuing), now)
            # The root runs no OCSP responder: its CRL (the ARL) covers the issuing CA.
            self._record(issuing, root_id, kind="ca", now=now, audit={}, presign=False)
        write_atomic(self.paths.issuers_bundle, pem(issuing).encode())

        signer_signer, created = self._key(OCSP_SIGNER)
        if created:
            done.append(f"created OCSP signer key ({signer_signer.label})")
        signer_cert = self.paths.load(OCSP_SIGNER)
        if signer_cert is None or signer_cert.public_key() != signer_signer.public_key():
            self.issue_ocsp_signer(issuing, issuing_signer, signer_signer)
            done.append("created OCSP signer certificate")
        return done

    @staticmethod
    def _check_pair(cert: x509.Certificate, signer: Signer, name: str) -> None:
        if cert.public_key() != signer.public_key():
            raise StateError(f"the {name} certificate does not match the {name} key in the key backend")

    def _record(
        self,
        cert: x509.Certificate,
        issuer: str,
        *,
        kind: str,
        now: dt.datetime,
        audit: dict[str, object],
        presign: bool = True,
    ) -> CertificateRecord:
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns = ()
        record = CertificateRecord(
            issuer_id=issuer,
            serial=cert.serial_number,
            der=_der(cert),
            subject=cert.subject.rfc4514_string(),
            dns_names=dns,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            spki_sha256=spki_sha256(key),
            kind=kind,
        )
        self.store.add_certificate(record, at=now, audit={"kind": kind, **audit}, presign=presign)
        log.info(
            "certificate issued",
            extra={
                "serial": serial_text(record.serial),
                "kind": kind,
                "dns_names": list(dns),
                "not_after": record.not_after,
            },
        )
        return record

    def issue_ocsp_signer(
        self, issuing: x509.Certificate, issuing_signer: Signer, ocsp_signer: Signer
    ) -> x509.Certificate:
        """(Re)certify the delegated OCSP signer key (table 7.1-2, BR 7.1.2.8)."""
        now = self.clock.now()
        ca = self.settings.ca
        not_after = min(now + dt.timedelta(days=ca.ocsp_signer_validity_days), issuing.not_valid_after_utc)
        builder = profiles.ocsp_signer(
            subject=names.parse_name(ca.ocsp_signer_subject),
            public_key=ocsp_signer.public_key(),
            issuer=issuing,
            serial=x509.random_serial_number(),
            not_before=now,
            not_after=not_after,
        )
        lint.lint_builder(builder, "OCSP-RESPONDER", allow_local_urls=ca.lint_allow_local_urls)
        cert = builder.sign(SignerKey(issuing_signer), hashes.SHA256())
        self._record(cert, issuer_id(issuing), kind="ocsp-signer", now=now, audit={})
        self.paths.save(OCSP_SIGNER, cert)
        return cert

    def renew_ocsp_signer_if_due(self) -> x509.Certificate | None:
        """Re-certify the OCSP signer when less than `ca.ocsp_signer_renew_before` is left.

        Mozilla policy: no response may outlive the signer certificate in its `certs`.
        """
        hierarchy = load_hierarchy(self.settings)
        left = hierarchy.ocsp_signer.not_valid_after_utc - self.clock.now()
        if left > parse_duration(self.settings.ca.ocsp_signer_renew_before):
            return None
        cert = self.issue_ocsp_signer(hierarchy.issuing, self.keys.open(ISSUING), self.keys.open(OCSP_SIGNER))
        log.info(
            "ocsp signer renewed",
            extra={"serial": format(cert.serial_number, "X"), "not_after": cert.not_valid_after_utc},
        )
        return cert

    # -- issuance -------------------------------------------------------------------------

    def issue(
        self,
        csr_data: bytes,
        *,
        dns_names: list[str] | None = None,
        days: int | None = None,
        subject: str | None = None,
    ) -> Issued:
        """Issue a server certificate per table 7.1-1 from a CSR (policy 4.3)."""
        hierarchy = self.hierarchy()
        request = csr_rules.check_request(
            csr_rules.load_csr(csr_data),
            dns_names=dns_names,
            subject=names.parse_name(subject) if subject else None,
            key_types=self.settings.ca.subscriber_key_types,
        )
        if self.store.is_key_blocked(request.spki_sha256):
            raise PolicyError("key refused: it was reported compromised and is blocked (BR 6.1.1.3)")
        now = self.clock.now()
        not_after = validity.not_after(
            now,
            requested_days=days,
            policy_max_days=self.settings.ca.max_validity_days,
            ca_not_after=hierarchy.issuing.not_valid_after_utc,
        )
        issuing_signer = self._issuing_signer(hierarchy)
        for _attempt in range(3):
            builder = profiles.server_certificate(
                subject=request.subject,
                dns_names=request.dns_names,
                public_key=request.public_key,
                issuer=hierarchy.issuing,
                serial=x509.random_serial_number(),
                not_before=now,
                not_after=not_after,
                urls=self.urls,
                policy_oid=self.settings.ca.policy_oid,
            )
            # Only what passed the lint reaches the CA key: lint_builder raises LintError otherwise.
            findings = lint.lint_builder(
                builder,
                "OV-FINAL-CERTIFICATE",
                allow_local_urls=self.settings.ca.lint_allow_local_urls,
                linter=self.linter,
            )
            cert = builder.sign(SignerKey(issuing_signer), hashes.SHA256())
            try:
                record = self._record(
                    cert,
                    hierarchy.issuing_id,
                    kind="server",
                    now=now,
                    audit={
                        # Policy 5.4: the request itself is part of the record.
                        "csr": csr_data.decode("ascii", "replace") if b"-----BEGIN" in csr_data else csr_data.hex(),
                        "dns_names": request.dns_names,
                        "not_after": not_after.isoformat(),
                        "signer": issuing_signer.label,
                        "lint_warnings": [str(f) for f in findings],
                    },
                )
            except ConflictError:
                continue  # 159 random bits colliding: draw another serial
            break
        else:
            raise StateError("could not draw a unique serial number in three attempts")
        warnings: list[str] = []
        for hook in self.on_issued:
            try:
                hook(record)
            except Exception as exc:  # the certificate exists; a failed follow-up is reported, not lost
                warnings.append(str(exc))
        return Issued(cert, record, warnings)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
