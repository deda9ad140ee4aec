"""`shirushi init`: creates what is missing of the hierarchy (keys, root, issuing CA, OCSP signer).

Does I/O: the KeyStore, the Store (issuer records) and the files in `{data_dir}/certs`.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from shirushi.asn1.keys import issuer_id
from shirushi.ca import lint, names, profiles
from shirushi.ca.hierarchy import (
    ISSUING,
    OCSP_SIGNER,
    ROOT,
    CertificatePaths,
    certificate_urls,
    check_pair,
    der,
    ocsp_signer_key,
    pem,
)
from shirushi.ca.ocsp_signer import certify_ocsp_signer
from shirushi.ca.recording import record_certificate
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.files import write_atomic
from shirushi.signing import RSA_2048, KeyStore, Signer, rsa_public, signer_key
from shirushi.store import Store


def _key(keys: KeyStore, name: str, key_type: str = RSA_2048) -> tuple[Signer, bool]:
    if keys.exists(name):
        return keys.open(name), False
    return keys.generate(name, key_type), True


def init_hierarchy(settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> list[str]:
    """Create what is missing: keys, root, issuing CA, OCSP signer, issuer records.

    Existing keys and certificates are kept; returns a line per thing created.
    """
    done: list[str] = []
    now = clock.now()
    ca = settings.ca
    paths = CertificatePaths(settings.data_path)

    root = paths.load(ROOT)
    root_signer, created = _key(keys, ROOT)
    if created:
        done.append(f"created root key ({root_signer.label})")
    if root is None:
        subject = names.parse_name(ca.root_subject)
        builder = profiles.root_ca(
            subject=subject,
            public_key=rsa_public(root_signer),
            serial=x509.random_serial_number(),
            not_before=now,
            not_after=now + dt.timedelta(days=ca.root_validity_days),
        )
        lint.lint_builder(builder, "ROOT-CA", allow_local_urls=ca.lint_allow_local_urls)
        root = builder.sign(signer_key(root_signer), hashes.SHA256())
        paths.save(ROOT, root)
        done.append(f"created root CA certificate: {ca.root_subject}")
    check_pair(root, root_signer, ROOT)

    issuing = paths.load(ISSUING)
    issuing_signer, created = _key(keys, ISSUING)
    if created:
        done.append(f"created issuing CA key ({issuing_signer.label})")
    if issuing is None:
        not_after = min(now + dt.timedelta(days=ca.validity_days), root.not_valid_after_utc)
        builder = profiles.issuing_ca(
            subject=names.parse_name(ca.subject),
            public_key=rsa_public(issuing_signer),
            root=root,
            serial=x509.random_serial_number(),
            not_before=now,
            not_after=not_after,
            urls=certificate_urls(settings),
            policy_oid=ca.policy_oid,
            policy=ca.issuing_ca_policy,
        )
        lint.lint_builder(builder, profiles.lint_type(ca.issuing_ca_policy), allow_local_urls=ca.lint_allow_local_urls)
        issuing = builder.sign(signer_key(root_signer), hashes.SHA256())
        paths.save(ISSUING, issuing)
        done.append(f"created issuing CA certificate: {ca.subject}")
    check_pair(issuing, issuing_signer, ISSUING)

    root_id = issuer_id(root)
    issuing_id = issuer_id(issuing)
    known = {row.id for row in store.issuers()}
    if root_id not in known:
        store.add_issuer(root_id, ROOT, root.subject.rfc4514_string(), der(root), now)
    if issuing_id not in known:
        store.add_issuer(issuing_id, ISSUING, issuing.subject.rfc4514_string(), der(issuing), now)
        # The root runs no OCSP responder: its CRL (the ARL) covers the issuing CA.
        record_certificate(store, issuing, root_id, kind="ca", now=now, audit={}, presign=False)
    write_atomic(paths.issuers_bundle, pem(issuing).encode())

    signer_signer, created = _key(keys, ocsp_signer_key(settings), settings.ocsp.signer_key)
    if created:
        done.append(f"created OCSP signer key ({settings.ocsp.signer_key}, {signer_signer.label})")
    signer_cert = paths.load(OCSP_SIGNER)
    if signer_cert is None or signer_cert.public_key() != signer_signer.public_key():
        certify_ocsp_signer(settings, store, clock, issuing, issuing_signer, signer_signer)
        done.append("created OCSP signer certificate")
    return done
