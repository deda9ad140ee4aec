"""The issuance use case: a server certificate from a CSR, signed by the issuing CA key.

Orchestration only: profiles, CSR rules and validity are pure modules; keys are reached through
the KeyStore/Signer seam; records go to the Store. Does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from shirushi.ca import csr as csr_rules
from shirushi.ca import lint, names, profiles, validity, weak_keys
from shirushi.ca.hierarchy import ISSUING, CertificatePaths, Hierarchy, certificate_urls, check_pair, load_hierarchy
from shirushi.ca.recording import record_certificate
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.errors import ConflictError, PolicyError, StateError
from shirushi.signing import KeyStore, Signer, SignerKey
from shirushi.store import CertificateRecord, Store


@dataclasses.dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    record: CertificateRecord
    warnings: list[str]


class Authority:
    """Issues certificates with the issuing CA key."""

    def __init__(self, settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.paths = CertificatePaths(settings.data_path)
        self.urls = certificate_urls(settings)
        # Called with each newly stored certificate (presigning hooks in here).
        self.on_issued: list[Callable[[CertificateRecord], None]] = []
        # Pre-issuance lint: in this process, or a LintPool's workers (`serve`).
        self.linter: lint.LintFunction = lint.lint_der
        self._hierarchy: tuple[object, Hierarchy] | None = None
        self._issuing: tuple[x509.Certificate, Signer] | None = None
        self._weak_keys: weak_keys.WeakKeys | None = None

    def weak_keys(self) -> weak_keys.WeakKeys:
        """The weak-key check with `ca.weak_key_lists`, read once per process (BR 6.1.1.3)."""
        if self._weak_keys is None:
            self._weak_keys = weak_keys.WeakKeys(weak_keys.load_lists(self.settings.ca.weak_key_lists))
        return self._weak_keys

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
        check_pair(hierarchy.issuing, signer, ISSUING)
        self._issuing = (hierarchy.issuing, signer)
        return signer

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
            weak_keys=self.weak_keys(),
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
                record = record_certificate(
                    self.store,
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
