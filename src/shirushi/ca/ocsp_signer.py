"""Certifies the delegated OCSP signer key, and renews that certificate before it runs out.

Does I/O: the Store, the KeyStore, and the certificate file in `{data_dir}/certs`.
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from shirushi.asn1.keys import issuer_id
from shirushi.ca import lint, names, profiles
from shirushi.ca.hierarchy import ISSUING, OCSP_SIGNER, CertificatePaths, load_hierarchy, ocsp_signer_key
from shirushi.ca.recording import record_certificate
from shirushi.clock import Clock
from shirushi.config import Settings
from shirushi.signing import KeyStore, Signer, signer_key
from shirushi.store import Store

log = logging.getLogger("shirushi.ca")


def certify_ocsp_signer(
    settings: Settings,
    store: Store,
    clock: Clock,
    issuing: x509.Certificate,
    issuing_signer: Signer,
    ocsp_signer: Signer,
) -> x509.Certificate:
    """(Re)certify the delegated OCSP signer key (table 7.1-2, BR 7.1.2.8)."""
    now = clock.now()
    ca = settings.ca
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
    cert = builder.sign(signer_key(issuing_signer), hashes.SHA256())
    record_certificate(store, cert, issuer_id(issuing), kind="ocsp-signer", now=now, audit={})
    CertificatePaths(settings.data_path).save(OCSP_SIGNER, cert)
    return cert


def renew_ocsp_signer_if_due(settings: Settings, store: Store, keys: KeyStore, clock: Clock) -> x509.Certificate | None:
    """Re-certify the OCSP signer when less than `ca.ocsp_signer_renew_before` is left, or when
    the configured signer key (`ocsp.signer_key`) is not the one certified.

    Mozilla policy: no response may outlive the signer certificate in its `certs`.
    """
    hierarchy = load_hierarchy(settings)
    signer = keys.open(ocsp_signer_key(settings))
    left = hierarchy.ocsp_signer.not_valid_after_utc - clock.now()
    if left > settings.ca.ocsp_signer_renew_before and hierarchy.ocsp_signer.public_key() == signer.public_key():
        return None
    cert = certify_ocsp_signer(settings, store, clock, hierarchy.issuing, keys.open(ISSUING), signer)
    log.info(
        "ocsp signer renewed",
        extra={"serial": format(cert.serial_number, "X"), "not_after": cert.not_valid_after_utc},
    )
    return cert
