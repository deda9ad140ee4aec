"""revokeCert (RFC 8555 7.6): by the account that ordered the certificate, or by the
certificate's own key. The latter is a key-compromise report (policy 4.9.12): every certificate
with the key is revoked keyCompromise and the key is blocked (BR 6.1.1.3). Does I/O."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from shirushi.acme import jws
from shirushi.acme.problems import Problem
from shirushi.asn1.keys import spki_sha256
from shirushi.backend import Backend
from shirushi.errors import ConflictError, ShirushiError
from shirushi.reasons import CODES

CERT = "cert"
# BR 7.2.2 / 4.9.1.1: the reasons a subscriber may give.
SUBSCRIBER_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation")


def revoke(backend: Backend, payload: dict[str, Any], *, account_id: str | None, jwk: dict[str, Any] | None) -> None:
    der = jws.b64decode(payload.get("certificate"), "certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise Problem("malformed", "certificate is not DER") from None
    rec = backend.store.certificate(cert.serial_number)
    if rec is None or rec.der != der:
        raise Problem("malformed", "this CA did not issue that certificate", status=404)
    code = payload.get("reason", 0)
    names = {v: k for k, v in CODES.items()}
    reason = names.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if reason not in SUBSCRIBER_REASONS:
        raise Problem("badRevocationReason", f"reason {code!r} is not one a subscriber may give (BR 7.2.2)")
    if rec.revoked_at is not None:
        raise Problem("alreadyRevoked", "the certificate is already revoked")
    try:
        if jwk is not None:
            if jwk != jws.jwk_of(cert.public_key()):  # type: ignore[arg-type]
                raise Problem("unauthorized", "the JWS key is not the certificate's key")
            backend.revoker.revoke_key(
                spki_sha256(cert.public_key()),
                "keyCompromise",
                requested_by="acme revokeCert (certificate key)",
                note="revokeCert signed by the certificate's key (RFC 8555 7.6, policy 4.9.12)",
                reported=True,
            )
            return
        assert account_id is not None
        if backend.store.acme.owner(CERT, format(cert.serial_number, "x")) != account_id:
            raise Problem("unauthorized", "this account did not order the certificate")
        backend.revoker.revoke(
            cert.serial_number, reason, by_subscriber=True, requested_by=f"acme account {account_id}"
        )
    except ConflictError:
        raise Problem("alreadyRevoked", "the certificate is already revoked") from None
    except ShirushiError as exc:
        raise Problem("badRevocationReason" if exc.code == "policy" else "serverInternal", str(exc)) from None
