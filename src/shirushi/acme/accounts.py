"""ACME accounts (RFC 8555 7.3): creation with optional External Account Binding, update,
deactivation and key rollover. Does database I/O through the store."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from shirushi.acme import jws
from shirushi.acme.problems import Problem
from shirushi.config_services import ACMESettings
from shirushi.store.acme import ACMEObjects

ACCOUNT = "account"


def account_url(base: str, account_id: str) -> str:
    return f"{base}acme/acct/{account_id}"


def account_json(data: dict[str, Any], base: str, account_id: str) -> dict[str, Any]:
    return {
        "status": data["status"],
        "contact": data.get("contact", []),
        "orders": f"{base}acme/acct/{account_id}/orders",
        "key": data["jwk"],
    }


def find_by_key(objects: ACMEObjects, jwk: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    return objects.find(ACCOUNT, jws.thumbprint(jwk))


def new_account(
    objects: ACMEObjects,
    settings: ACMESettings,
    jwk: dict[str, Any],
    payload: dict[str, Any],
    url: str,
    now: dt.datetime,
) -> tuple[str, dict[str, Any], bool]:
    """(account id, data, created); an existing key answers its account (RFC 8555 7.3.1)."""
    existing = find_by_key(objects, jwk)
    if existing is not None:
        return existing[0], existing[1], False
    if payload.get("onlyReturnExisting"):
        raise Problem("accountDoesNotExist", "no account has this key")
    contact = payload.get("contact", [])
    if not isinstance(contact, list) or not all(isinstance(c, str) and c.startswith("mailto:") for c in contact):
        raise Problem("invalidContact", "contact must be a list of mailto: URLs")
    if settings.eab_required and "externalAccountBinding" not in payload:
        raise Problem("externalAccountRequired", "this server requires an external account binding")
    eab_kid = None
    if "externalAccountBinding" in payload:
        eab_kid = _check_binding(settings, payload["externalAccountBinding"], jwk, url)
    account_id = secrets.token_urlsafe(12)
    data = {"status": "valid", "contact": contact, "jwk": jwk, "eab_kid": eab_kid, "created": now.isoformat()}
    objects.put(ACCOUNT, account_id, data, now, lookup=jws.thumbprint(jwk))
    return account_id, data, True


def _check_binding(settings: ACMESettings, value: Any, jwk: dict[str, Any], url: str) -> str:
    inner = jws.parse_inner(value)
    kid = inner.protected.get("kid")
    key = settings.eab_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise Problem("unauthorized", "unknown external account key id")
    if inner.protected.get("url") != url or "nonce" in inner.protected:
        raise Problem("malformed", "the external account binding must name the newAccount URL and carry no nonce")
    jws.verify_hmac(inner, key)
    if inner.payload_json != jwk:
        raise Problem("malformed", "the external account binding does not bind this account key")
    return str(kid)


def update(
    objects: ACMEObjects, account_id: str, data: dict[str, Any], payload: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    if payload.get("status") == "deactivated":
        data = {**data, "status": "deactivated"}  # RFC 8555 7.3.6: final
    elif "status" in payload and payload["status"] != data["status"]:
        raise Problem("malformed", "an account can only be deactivated")
    if "contact" in payload:
        contact = payload["contact"]
        if not isinstance(contact, list) or not all(isinstance(c, str) and c.startswith("mailto:") for c in contact):
            raise Problem("invalidContact", "contact must be a list of mailto: URLs")
        data = {**data, "contact": contact}
    objects.put(ACCOUNT, account_id, data, now)
    return data


def key_change(
    objects: ACMEObjects,
    account_id: str,
    data: dict[str, Any],
    outer_url: str,
    base: str,
    payload: dict[str, Any],
    now: dt.datetime,
) -> dict[str, Any]:
    """RFC 8555 7.3.5: the inner JWS, signed by the new key, names the account and the old key."""
    inner = jws.parse_inner(payload)
    new_jwk = inner.protected.get("jwk")
    if "kid" in inner.protected or not isinstance(new_jwk, dict):
        raise Problem("malformed", "the inner JWS must carry the new key as jwk")
    if inner.protected.get("url") != outer_url:
        raise Problem("malformed", "the inner JWS must have the same url as the outer one")
    if "nonce" in inner.protected:
        raise Problem("malformed", "the inner JWS carries no nonce")
    jws.verify(inner, jws.public_key(new_jwk))
    body = inner.payload_json
    if body.get("account") != account_url(base, account_id):
        raise Problem("malformed", "the key change names another account")
    if body.get("oldKey") != data["jwk"]:
        raise Problem("malformed", "oldKey is not the account's current key")
    clash = find_by_key(objects, new_jwk)
    if clash is not None:
        raise Problem("conflict", "another account already uses the new key", status=409)
    data = {**data, "jwk": new_jwk}
    objects.put(ACCOUNT, account_id, data, now)
    objects.set_lookup(ACCOUNT, account_id, jws.thumbprint(new_jwk))
    return data
