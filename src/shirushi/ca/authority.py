"""The issuance use case: a server certificate from a CSR, signed by the issuing CA key.

Orchestration only: profiles, CSR rules and validity are pure modules; keys are reached through
the KeyStore/Signer seam; records go to the Store. Does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from shirushi.ca import csr as csr_rules
from shirushi.ca import lint, names, profiles, validity, weak_keys
from shirushi.ca.hierarchy import ISSUING, CertificatePaths, Hierarchy, certificate_urls, check_pair, load_hierarchy
from shirushi.ca.recording import record_certificate
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.crl.shards import shard_of
from shirushi.errors import ConflictError, PolicyError, StateError
from shirushi.metrics.registry import metrics
from shirushi.signing import KeyStore, Signer, signer_key
from shirushi.store import CertificateRecord, Store

if TYPE_CHECKING:
    from shirushi.validation.gate import DomainGate


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
        self._gate: DomainGate | None = None
        self._weak_keys: weak_keys.WeakKeys | None = None

    def gate(self) -> DomainGate:
        """The domain check (built on first use: most CLI issuance never needs DNS)."""
        if self._gate is None:
            from shirushi.validation.gate import DomainGate

            self._gate = DomainGate(self.settings, self.store.validations)
        return self._gate

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
        subject: str | x509.Name | None = None,
        audit: Mapping[str, object] | None = None,
        door: str = "cli",
        profile: str = "ov",
        account_uri: str | None = None,
    ) -> Issued:
        """Issue a server certificate per table 7.1-1 from a CSR (policy 4.3).

        `subject` as validated by the RA (text, or a Name such as a renewed certificate's);
        `audit` adds fields to the issuance's audit record (who asked, what it renews).
        `door` ("cli", "api", "acme") says who asks: a door in `validation.enforce` must pass the
        domain gate (DV records and CAA for every name). `profile` is "ov" or "dv" (BR 7.1.6.1).
        """
        hierarchy = self.hierarchy()
        reserved = profiles.DV_POLICY if profile == "dv" else profiles.OV_POLICY
        if not profiles.asserts_policy(hierarchy.issuing, reserved):
            # BR 7.1.2.10.5 / RFC 5280 6.1: a certificate whose reserved policy its issuing CA
            # does not list would lose it in path validation, so none is made.
            raise StateError(
                f"the issuing CA certificate lists neither the {profile.upper()} policy {reserved.dotted_string} "
                "nor anyPolicy, so it cannot issue this profile; certify an issuing CA with "
                'ca.issuing_ca_policy = "any" (or the matching one) first (docs/acme.md)'
            )
        if isinstance(subject, str):
            subject = names.parse_name(subject) if subject else None
        request = csr_rules.check_request(
            csr_rules.load_csr(csr_data),
            dns_names=dns_names,
            subject=subject,
            key_types=self.settings.ca.subscriber_key_types,
            profile=profile,
            weak_keys=self.weak_keys(),
        )
        if self.store.is_key_blocked(request.spki_sha256):
            raise PolicyError("key refused: it was reported compromised and is blocked (BR 6.1.1.3)")
        now = self.clock.now()
        domain_check: dict[str, object] | None = None
        if self.settings.validation.enforce and door in self.settings.validation.enforce:
            domain_check = self.gate().check(request.dns_names, door, now, account_uri=account_uri)
        not_after = validity.not_after(
            now,
            requested_days=days,
            policy_max_days=self.settings.ca.max_validity_days,
            ca_not_after=hierarchy.issuing.not_valid_after_utc,
        )
        issuing_signer = self._issuing_signer(hierarchy)
        for _attempt in range(3):
            serial = x509.random_serial_number()
            shard = shard_of(serial, self.settings.crl.shards)
            builder = profiles.server_certificate(
                subject=request.subject,
                dns_names=request.dns_names,
                public_key=request.public_key,
                issuer=hierarchy.issuing,
                serial=serial,
                not_before=now,
                not_after=not_after,
                urls=self.urls,
                policy_oid=self.settings.ca.policy_oid,
                crl_shard=shard,
                profile=profile,
            )
            # Only what passed the lint reaches the CA key: lint_builder raises LintError otherwise.
            findings = lint.lint_builder(
                builder,
                "DV-FINAL-CERTIFICATE" if profile == "dv" else "OV-FINAL-CERTIFICATE",
                allow_local_urls=self.settings.ca.lint_allow_local_urls,
                linter=self.linter,
            )
            cert = builder.sign(signer_key(issuing_signer), hashes.SHA256())
            try:
                record = record_certificate(
                    self.store,
                    cert,
                    hierarchy.issuing_id,
                    kind="server",
                    now=now,
                    crl_shard=shard,
                    audit={
                        # Policy 5.4: the request itself is part of the record.
                        "csr": csr_data.decode("ascii", "replace") if b"-----BEGIN" in csr_data else csr_data.hex(),
                        "dns_names": request.dns_names,
                        "not_after": not_after.isoformat(),
                        "signer": issuing_signer.label,
                        "lint_warnings": [str(f) for f in findings],
                        **(audit or {}),
                        "door": door,
                        "profile": profile,
                        # BR 3.2.2.4 / 3.2.2.8: what the domain gate relied on, when enforced.
                        "domain_check": domain_check,
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
        metrics().certificates_issued.inc()
        return Issued(cert, record, warnings)
