"""Pre-issuance linting (BR 4.3.1.2) with pkilint. Pure apart from CPU.

The to-be-signed certificate is signed with a throwaway key (so the real CA key signs only what
passed) and linted as the type it will be; an ERROR or FATAL finding refuses issuance. Findings
caused only by loopback or IP-address URLs (demo and test configs) may be tolerated by
`ca.lint_allow_local_urls`.

pkilint's validator is built once per process and certificate type (it costs 40 times one lint);
`lint_pool` runs the lint itself in worker processes, one per core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
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


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def _defer_language_tables() -> None:
    """Import `iso639` (ISO 639 tables parsed from text at import) only if a lint needs it.

    pkilint imports it for the ETSI QC-statement language check, which no certificate of ours
    reaches; parsing its tables is a third of pkilint's import time, paid by every `issue`.
    """
    if "iso639" not in sys.modules:
        sys.modules["iso639"] = _OnFirstUse("iso639")


@contextlib.contextmanager
def _one_public_suffix_list() -> Iterator[None]:
    """Let pkilint's name validators share one parsed public suffix list.

    Each of them parses its own copy (five per validator, 50 ms to 200 ms each); the list is
    only read after parsing, so one copy answers the same for all.
    """
    import publicsuffixlist

    made: dict[tuple[tuple[str, Any], ...], Any] = {}
    original = publicsuffixlist.PublicSuffixList

    def shared(**options: Any) -> Any:
        key = tuple(sorted(options.items()))
        if key not in made:
            made[key] = original(**options)
        return made[key]

    setattr(publicsuffixlist, "PublicSuffixList", shared)  # noqa: B010 (a class swapped for a function)
    try:
        yield
    finally:
        setattr(publicsuffixlist, "PublicSuffixList", original)  # noqa: B010


class _Linter:
    """pkilint's validator and finding filters for one certificate type, built once.

    Building them costs about 0.4 s (mostly the public suffix list parsed again for each
    name validator), linting one certificate with them about 10 ms. Whether pkilint's validators
    may run in two threads at once is not documented, so a lock makes one lint at a time per
    process; the pool (`lint_pool.LintPool`) gives the parallelism.
    """

    def __init__(self, cert_type: str) -> None:
        _defer_language_tables()
        from pkilint.cabf import serverauth
        from pkilint.cabf.serverauth import serverauth_constants
        from pkilint.pkix import certificate

        kind = serverauth_constants.CertificateType.from_option_str(cert_type)
        with _one_public_suffix_list():
            self.validator = certificate.create_pkix_certificate_validator_container(
                serverauth.create_decoding_validators(), serverauth.create_validators(kind)
            )
        self.filters = serverauth.create_serverauth_finding_filters(kind)
        self.lock = threading.Lock()

    def lint(self, der: bytes) -> list[Finding]:
        from pkilint import finding_filter, loader

        with self.lock:
            document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
            results = self.validator.validate(document.root)
            results, _ = finding_filter.filter_results(self.filters, results)
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


_linters: dict[str, _Linter] = {}
# Held while a linter is built: also keeps the public suffix list swap above to one thread.
_linters_lock = threading.Lock()


def _linter(cert_type: str) -> _Linter:
    with _linters_lock:
        linter = _linters.get(cert_type)
        if linter is None:
            linter = _linters[cert_type] = _Linter(cert_type)
        return linter


def warm(cert_types: tuple[str, ...]) -> None:
    """Build the linters of these certificate types now (worker start-up, not first issuance)."""
    for cert_type in cert_types:
        _linter(cert_type)


def lint_der(der: bytes, cert_type: str) -> list[Finding]:
    """Every finding pkilint's serverauth linter reports for the certificate `der`."""
    return _linter(cert_type).lint(der)


# Lints DER as a certificate type: `lint_der` here, or `LintPool.lint_der` in worker processes.
LintFunction = Callable[[bytes, str], list[Finding]]


def trial_der(builder: x509.CertificateBuilder) -> bytes:
    """The certificate `builder` would make, signed with a throwaway key (never the CA's)."""
    return builder.sign(_throwaway_key(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _is_loopback_url(finding: Finding) -> bool:
    return (
        finding.code == LOCAL_URL_FINDING
        and finding.path.endswith(("uniformResourceIdentifier", "cPSuri"))
        and any(host in finding.message for host in _LOOPBACK_HOSTS)
    )


def verdict(findings: list[Finding], *, allow_local_urls: bool) -> list[Finding]:
    """Raise LintError on ERROR/FATAL findings; return those below ERROR (for the audit record)."""
    blocking = [
        f for f in findings if f.severity in ("FATAL", "ERROR") and not (allow_local_urls and _is_loopback_url(f))
    ]
    if blocking:
        raise LintError([str(f) for f in blocking])
    return [f for f in findings if f.severity not in ("FATAL", "ERROR")]


def lint_builder(
    builder: x509.CertificateBuilder, cert_type: str, *, allow_local_urls: bool, linter: LintFunction = lint_der
) -> list[Finding]:
    """Lint the certificate `builder` would make; raise LintError on ERROR/FATAL findings.

    Returns the findings below ERROR (warnings kept for the audit record).
    """
    return verdict(linter(trial_der(builder), cert_type), allow_local_urls=allow_local_urls)
