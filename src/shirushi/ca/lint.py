"""Pre-issuance linting (BR 4.3.1.2) with pkilint. Pure apart from CPU.

The to-be-signed certificate is signed with a throwaway key (so the real CA key signs only what
passed) and linted as the type it will be; an ERROR or FATAL finding refuses issuance. Findings
caused only by loopback or IP-address URLs (demo and test configs) may be tolerated by
`ca.lint_allow_local_urls`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shirushi.errors import LintError

# What a loopback URL (http://127.0.0.1:8080/) in AIA, CDP or a CPS qualifier provokes; only
# tolerated for URIs whose host is a loopback name, so a real internal name is still refused.
LOCAL_URL_FINDING = "cabf.internal_domain_name"
_LOOPBACK_HOSTS = ('"127.', '"localhost"', '"::1"', '"[::1]"')


@dataclasses.dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    path: str

    def __str__(self) -> str:
        text = f"{self.severity} {self.code}"
        return f"{text} ({self.message})" if self.message else text


@functools.lru_cache(maxsize=1)
def _throwaway_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _validator(cert_type: str) -> Any:
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate

    kind = serverauth_constants.CertificateType.from_option_str(cert_type)
    return kind, certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )


def lint_der(der: bytes, cert_type: str) -> list[Finding]:
    """Every finding pkilint's serverauth linter reports for the certificate `der`."""
    from pkilint import finding_filter, loader
    from pkilint.cabf import serverauth

    kind, validator = _validator(cert_type)
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
    results = validator.validate(document.root)
    results, _ = finding_filter.filter_results(serverauth.create_serverauth_finding_filters(kind), results)
    findings = []
    for result in results:
        for description in result.finding_descriptions:
            findings.append(
                Finding(
                    description.finding.severity.name,
                    description.finding.code,
                    description.message or "",
                    result.node.path,
                )
            )
    return findings


def _is_loopback_url(finding: Finding) -> bool:
    return (
        finding.code == LOCAL_URL_FINDING
        and finding.path.endswith(("uniformResourceIdentifier", "cPSuri"))
        and any(host in finding.message for host in _LOOPBACK_HOSTS)
    )


def lint_builder(builder: x509.CertificateBuilder, cert_type: str, *, allow_local_urls: bool) -> list[Finding]:
    """Lint the certificate `builder` would make; raise LintError on ERROR/FATAL findings.

    Returns the findings below ERROR (warnings kept for the audit record).
    """
    trial = builder.sign(_throwaway_key(), hashes.SHA256())
    findings = lint_der(trial.public_bytes(serialization.Encoding.DER), cert_type)
    blocking = [
        f for f in findings if f.severity in ("FATAL", "ERROR") and not (allow_local_urls and _is_loopback_url(f))
    ]
    if blocking:
        raise LintError([str(f) for f in blocking])
    return [f for f in findings if f.severity not in ("FATAL", "ERROR")]
