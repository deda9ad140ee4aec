"""Certificate profiles: unsigned pyca builders for every certificate the CA makes. Pure.

- the demo root CA (BR 7.1.2.1),
- the issuing CA (BR 7.1.2.6, TLS subordinate CA),
- the delegated OCSP signer (policy table 7.1-2, BR 7.1.2.8),
- subscriber server certificates (policy table 7.1-1, BR 7.1.2.7, OV), for RSA subscriber keys
  or, when the CA enables them, ECDSA P-256/P-384 keys (keyUsage per BR 7.1.2.7.11).

Deviations kept on purpose from the policy's tables (docs/profiles.md): subscriber certificates
keep SKI and keyEncipherment (the BR only discourage them, NOT RECOMMENDED); the OCSP signer has no
certificatePolicies (BR 7.1.2.8 forbids it, overriding table 7.1-2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ObjectIdentifier

from shirushi.asn1.keys import key_identifier
from shirushi.crl.shards import crl_url

# BR 7.1.6.1: Organization Validated reserved policy identifier.
OV_POLICY = ObjectIdentifier("2.23.140.1.2.2")
# BR 7.1.6.1: Domain Validated, for certificates with domain control only (ACME, docs/acme.md).
DV_POLICY = ObjectIdentifier("2.23.140.1.2.1")
ANY_POLICY = ObjectIdentifier("2.5.29.32.0")

# CA keys are RSA; a subscriber's may also be ECDSA.
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclasses.dataclass(frozen=True)
class URLs:
    """Where relying parties find our services; written into certificates."""

    ocsp: str
    repository: str  # base, ending in "/"
    cps: str

    @property
    def root_crl(self) -> str:
        return self.repository + "root.crl"

    @property
    def root_cert(self) -> str:
        return self.repository + "root.crt"

    @property
    def issuing_crl(self) -> str:
        return self.repository + "issuing-ca.crl"

    def issuing_crl_shard(self, shard: int) -> str:
        """The CRL a subscriber certificate of that shard names (shard 0: `issuing_crl`)."""
        return crl_url(self.repository, "issuing-ca", shard)

    @property
    def issuing_cert(self) -> str:
        return self.repository + "issuing-ca.crt"


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _ski(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier(key_identifier(public_key))


def _aki(issuer_key: rsa.RSAPublicKey) -> x509.AuthorityKeyIdentifier:
    # keyIdentifier only (BR 7.1.2.11.1).
    return x509.AuthorityKeyIdentifier(key_identifier(issuer_key), None, None)


def _ku(**flags: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _cdp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)])


def root_ca(
    *,
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """Self-signed root (BR 7.1.2.1): CA:TRUE critical, keyCertSign+cRLSign critical, SKI, AKI."""
    return (
        _base(subject, subject, public_key, serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(_aki(public_key), critical=False)
    )


def issuing_ca(
    *,
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    root: x509.Certificate,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    urls: URLs,
    policy_oid: str,
    policy: str = "ov",
) -> x509.CertificateBuilder:
    """The issuing CA (BR 7.1.2.6): pathlen 0, EKU serverAuth, CDP of the root's CRL, and the
    policies of `issuing_policies`."""
    root_key = root.public_key()
    assert isinstance(root_key, rsa.RSAPublicKey)
    return (
        _base(subject, root.subject, public_key, serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(issuing_policies(policy, policy_oid), critical=False)
        .add_extension(_cdp(urls.root_crl), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.root_cert),
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(_aki(root_key), critical=False)
        .add_extension(_ski(public_key), critical=False)
    )


def issuing_policies(policy: str, policy_oid: str) -> x509.CertificatePolicies:
    """BR 7.1.2.10.5 for `ca.issuing_ca_policy`: a policy-restricted CA lists exactly one reserved
    identifier (the subscriber type it issues) and the CP's own; an affiliated CA that issues both
    OV and DV lists anyPolicy alone. A subscriber certificate keeps its reserved policy through
    RFC 5280 6.1 path validation only if its issuing CA lists that policy or anyPolicy."""
    if policy == "any":
        return x509.CertificatePolicies([x509.PolicyInformation(ANY_POLICY, None)])
    reserved = DV_POLICY if policy == "dv" else OV_POLICY
    return x509.CertificatePolicies(
        [x509.PolicyInformation(reserved, None), x509.PolicyInformation(ObjectIdentifier(policy_oid), None)]
    )


def lint_type(policy: str) -> str:
    """pkilint's document type for the issuing CA: anyPolicy is for an affiliated CA only."""
    return "INTERNAL-UNCONSTRAINED-TLS-CA" if policy == "any" else "EXTERNAL-UNCONSTRAINED-TLS-CA"


def asserts_policy(ca: x509.Certificate, policy: ObjectIdentifier) -> bool:
    """Whether a CA certificate lists `policy` or anyPolicy (RFC 5280 6.1.3 (d)), so that a
    subscriber certificate with `policy` keeps it through path validation."""
    try:
        listed = ca.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return False
    return any(p.policy_identifier in (policy, ANY_POLICY) for p in listed)


def ocsp_signer(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer: x509.Certificate,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """Delegated OCSP responder (table 7.1-2, BR 7.1.2.8): EKU OCSPSigning only, nocheck."""
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, rsa.RSAPublicKey)
    return (
        _base(subject, issuer.subject, public_key, serial, not_before, not_after)
        .add_extension(_ku(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(_aki(issuer_key), critical=False)
        .add_extension(_ski(public_key), critical=False)
    )


def server_certificate(
    *,
    subject: x509.Name,
    dns_names: list[str],
    public_key: PublicKey,
    issuer: x509.Certificate,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    urls: URLs,
    policy_oid: str,
    crl_shard: int = 0,
    profile: str = "ov",
) -> x509.CertificateBuilder:
    """Subscriber server certificate per table 7.1-1 (OV, BR 7.1.2.7; `profile` "dv" for DV); its
    CRL Distribution Point names its CRL shard (`crl/shards.py`)."""
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, rsa.RSAPublicKey)
    policies = x509.CertificatePolicies(
        [
            # BR 7.1.2.7.9: the reserved OID first, then the CP's own with its CPS URI.
            x509.PolicyInformation(DV_POLICY if profile == "dv" else OV_POLICY, None),
            x509.PolicyInformation(ObjectIdentifier(policy_oid), [urls.cps]),
        ]
    )
    # BR 7.1.2.7.11: RSA keys may also encipher (kept, docs/profiles.md); for ECDSA keys
    # keyEncipherment is forbidden and digitalSignature is all that TLS needs.
    usage = (
        _ku(digital_signature=True, key_encipherment=True)
        if isinstance(public_key, rsa.RSAPublicKey)
        else _ku(digital_signature=True)
    )
    return (
        _base(subject, issuer.subject, public_key, serial, not_before, not_after)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(policies, critical=False)
        .add_extension(_cdp(urls.issuing_crl_shard(crl_shard)), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp)
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.issuing_cert),
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(_aki(issuer_key), critical=False)
        .add_extension(_ski(public_key), critical=False)
    )
