"""ACME orders, authorizations and challenges (RFC 8555 7.4, 7.5, 8), and finalization through
the one issuance path. Does I/O (store, DNS, HTTP, signing); run from a thread.

Authorizations hold their challenges; a challenge is tried once (its random token is single use,
policy 3.2.7): the answer moves it, and its authorization, to valid or invalid for good. A
pending authorization expires after AUTHZ_LIFETIME, a valid one when its validation's reuse
period ends. Orders reuse an account's still-valid authorizations for the same name.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.acme import jws
from shirushi.acme.problems import Problem, from_error
from shirushi.backend import Backend
from shirushi.ca import csr as csr_rules
from shirushi.errors import InputError, PolicyError, ShirushiError
from shirushi.validation import acme_http, dns_change, values
from shirushi.validation.attempt import Attempt
from shirushi.validation.record import record_attempt

ORDER, AUTHZ, CERT = "order", "authz", "cert"
AUTHZ_LIFETIME = dt.timedelta(days=7)
ORDER_LIFETIME = dt.timedelta(days=7)
MAX_IDENTIFIERS = 100


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Orders:
    def __init__(self, backend: Backend, base: str) -> None:
        self.backend = backend
        self.objects = backend.store.acme
        self.settings = backend.settings
        self.base = base

    # -- orders ---------------------------------------------------------------------------

    def new_order(self, account_id: str, payload: dict[str, Any], now: dt.datetime) -> tuple[str, dict[str, Any]]:
        limit = self.settings.acme.orders_per_account_per_hour
        hour = dt.timedelta(hours=1)
        made = self.objects.created_since(ORDER, account_id, now - hour)
        if len(made) >= limit:
            raise Problem(
                "rateLimited",
                f"at most {limit} new orders per account per hour",
                retry_after=_retry_after(made, limit, hour, now),
            )
        identifiers = payload.get("identifiers")
        if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= MAX_IDENTIFIERS:
            raise Problem("malformed", f"identifiers must list 1 to {MAX_IDENTIFIERS} identifiers")
        if "notBefore" in payload or "notAfter" in payload:
            raise Problem("malformed", "notBefore and notAfter are chosen by the CA (policy 6.3.2)")
        names: list[str] = []
        problems = []
        for ident in identifiers:
            if not isinstance(ident, dict) or ident.get("type") != "dns" or not isinstance(ident.get("value"), str):
                raise Problem("unsupportedIdentifier", "only dns identifiers are supported")
            value = ident["value"]
            try:
                name = csr_rules.normalise_dns_name(value)
            except (InputError, PolicyError) as exc:  # PolicyError: a wildcard (not offered)
                problems.append(
                    {
                        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                        "detail": str(exc),
                        "identifier": {"type": "dns", "value": value},
                    }
                )
                continue
            if name not in names:
                names.append(name)
        if problems:
            raise Problem("rejectedIdentifier", "some identifiers are refused", subproblems=problems)
        self._rate_limit_names(names, now)
        authz_ids = [self._authorization(account_id, name, now) for name in names]
        order_id = secrets.token_urlsafe(12)
        data = {
            "status": "pending",
            "expires": iso(now + ORDER_LIFETIME),
            "identifiers": [{"type": "dns", "value": n} for n in names],
            "authorizations": authz_ids,
        }
        self.objects.put(ORDER, order_id, data, now, owner=account_id)
        return order_id, self.refresh_order(order_id, data, now)

    def _rate_limit_names(self, names: list[str], now: dt.datetime) -> None:
        limit = self.settings.acme.certificates_per_name_per_week
        week = dt.timedelta(days=7)
        for name in names:
            issued = self.objects.certificates_for_name(name, now - week)
            if len(issued) >= limit:
                raise Problem(
                    "rateLimited",
                    f"at most {limit} certificates per name per week ({name})",
                    retry_after=_retry_after(issued, limit, week, now),
                    subproblems=[
                        {
                            "type": "urn:ietf:params:acme:error:rateLimited",
                            "detail": f"{len(issued)} certificates for {name} in the last 7 days",
                            "identifier": {"type": "dns", "value": name},
                        }
                    ],
                )

    def order(self, account_id: str, order_id: str, now: dt.datetime) -> dict[str, Any]:
        data = self._owned(ORDER, order_id, account_id)
        return self.refresh_order(order_id, data, now)

    def refresh_order(self, order_id: str, data: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        """The order's status follows its authorizations (RFC 8555 7.1.6)."""
        status = data["status"]
        if status in ("pending", "ready") and now >= when(data["expires"]):
            status = "invalid"
            data = {**data, "error": Problem("unauthorized", "the order expired").document()}
        elif status == "pending":
            states = [self.authorization(a, now)["status"] for a in data["authorizations"]]
            if any(s != "valid" and s != "pending" for s in states):
                status = "invalid"
            elif all(s == "valid" for s in states):
                status = "ready"
        if status != data["status"]:
            data = {**data, "status": status}
            self.objects.put(ORDER, order_id, data, now)
        return data

    def order_json(self, order_id: str, data: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": data["status"],
            "expires": data["expires"],
            "identifiers": data["identifiers"],
            "authorizations": [f"{self.base}acme/authz/{a}" for a in data["authorizations"]],
            "finalize": f"{self.base}acme/order/{order_id}/finalize",
        }
        if data.get("certificate"):
            body["certificate"] = f"{self.base}acme/cert/{data['certificate']}"
        if data.get("error"):
            body["error"] = data["error"]
        return body

    # -- authorizations -------------------------------------------------------------------

    def _authorization(self, account_id: str, name: str, now: dt.datetime) -> str:
        wildcard = name.startswith("*.")
        base = name.removeprefix("*.")
        for v in self.backend.store.validations.current(base, now):
            if v.account == account_id and (v.wildcard or not wildcard):
                return self._new_authz(account_id, name, now, valid_until=v.reuse_until)
        return self._new_authz(account_id, name, now)

    def _new_authz(self, account_id: str, name: str, now: dt.datetime, valid_until: dt.datetime | None = None) -> str:
        wildcard = name.startswith("*.")
        types = ["dns-01"] if wildcard else ["http-01", "dns-01"]
        status = "valid" if valid_until else "pending"
        data: dict[str, Any] = {
            "status": status,
            "identifier": {"type": "dns", "value": name.removeprefix("*.")},
            "wildcard": wildcard,
            "expires": iso(valid_until or now + AUTHZ_LIFETIME),
            "challenges": [
                {"type": t, "token": values.new_value(), "status": "valid" if valid_until else "pending"} for t in types
            ],
        }
        authz_id = secrets.token_urlsafe(12)
        self.objects.put(AUTHZ, authz_id, data, now, owner=account_id)
        return authz_id

    def authorization(self, authz_id: str, now: dt.datetime, account_id: str | None = None) -> dict[str, Any]:
        data = self._owned(AUTHZ, authz_id, account_id) if account_id else self.objects.get(AUTHZ, authz_id)
        if data is None:
            raise Problem("malformed", "no such authorization", status=404)
        if data["status"] in ("pending", "valid") and now >= when(data["expires"]):
            data = {**data, "status": "expired"}
            self.objects.put(AUTHZ, authz_id, data, now)
        return data

    def authz_json(self, authz_id: str, data: dict[str, Any]) -> dict[str, Any]:
        body = {
            "status": data["status"],
            "identifier": data["identifier"],
            "expires": data["expires"],
            "challenges": [self.challenge_json(authz_id, i, c) for i, c in enumerate(data["challenges"])],
        }
        if data["wildcard"]:
            body["wildcard"] = True
        return body

    def challenge_json(self, authz_id: str, index: int, c: dict[str, Any]) -> dict[str, Any]:
        body = {
            "type": c["type"],
            "url": f"{self.base}acme/chall/{authz_id}/{index}",
            "token": c["token"],
            "status": c["status"],
        }
        for key in ("validated", "error"):
            if c.get(key):
                body[key] = c[key]
        return body

    def deactivate_authz(self, account_id: str, authz_id: str, now: dt.datetime) -> dict[str, Any]:
        data = self.authorization(authz_id, now, account_id)
        if data["status"] not in ("pending", "valid"):
            raise Problem("malformed", f"an authorization that is {data['status']} cannot be deactivated")
        data = {**data, "status": "deactivated"}
        self.objects.put(AUTHZ, authz_id, data, now)
        return data

    # -- challenges -----------------------------------------------------------------------

    def answer_challenge(
        self, account_id: str, jwk: dict[str, Any], authz_id: str, index: int, now: dt.datetime
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Try the challenge once (RFC 8555 7.5.1); returns (authz, challenge)."""
        data = self.authorization(authz_id, now, account_id)
        if not 0 <= index < len(data["challenges"]):
            raise Problem("malformed", "no such challenge", status=404)
        challenge = data["challenges"][index]
        if challenge["status"] != "pending" or data["status"] != "pending":
            if data["status"] == "expired":
                raise Problem("unauthorized", "the authorization has expired")
            return data, challenge  # already answered: the token is single use
        processing = {**data, "challenges": [dict(c) for c in data["challenges"]]}
        processing["challenges"][index]["status"] = "processing"
        if not self.objects.swap(AUTHZ, authz_id, data, processing):
            fresh = self.authorization(authz_id, now, account_id)
            return fresh, fresh["challenges"][index]
        attempt = self._validate(data, challenge, jws.thumbprint(jwk))
        record_attempt(self.backend.store.validations, attempt, now, account_id)
        done = {**processing, "challenges": [dict(c) for c in processing["challenges"]]}
        if attempt.ok:
            done["status"] = "valid"
            done["expires"] = iso(now + values.REUSE_PERIOD)
            done["challenges"][index].update(status="valid", validated=iso(now))
        else:
            done["status"] = "invalid"
            error = Problem(attempt.problem or "unauthorized", attempt.detail).document()
            done["challenges"][index].update(status="invalid", error=error)
        self.objects.put(AUTHZ, authz_id, done, now)
        return done, done["challenges"][index]

    def _validate(self, authz: dict[str, Any], challenge: dict[str, Any], thumb: str) -> Attempt:
        name = ("*." if authz["wildcard"] else "") + authz["identifier"]["value"]
        key_authorization = f"{challenge['token']}.{thumb}"
        gate = self.backend.authority.gate()
        v = self.settings.validation
        if challenge["type"] == "http-01":
            return acme_http.check(
                gate.resolver,
                name,
                challenge["token"],
                key_authorization,
                port=v.http_port,
                allow_loopback=v.allow_loopback,
            )
        return dns_change.check(gate.resolver, name, values.dns_digest(key_authorization))

    # -- finalization ---------------------------------------------------------------------

    def finalize(
        self, account_id: str, account: dict[str, Any], order_id: str, payload: dict[str, Any], now: dt.datetime
    ) -> dict[str, Any]:
        data = self.order(account_id, order_id, now)
        if data["status"] != "ready":
            raise Problem("orderNotReady", f"the order is {data['status']}, not ready")
        der = jws.b64decode(payload.get("csr"), "csr")
        try:
            request = csr_rules.load_csr(der)
        except InputError as exc:
            raise Problem("badCSR", str(exc)) from None
        wanted = sorted(i["value"] for i in data["identifiers"])
        got = sorted({n.lower() for n in _csr_names(request)})
        if got != wanted:
            raise Problem("badCSR", f"the CSR names {got}, the order {wanted}")
        profile, subject = self._profile(account)
        processing = {**data, "status": "processing"}
        if not self.objects.swap(ORDER, order_id, data, processing):
            raise Problem("orderNotReady", "the order is being finalized")
        try:
            issued = self.backend.authority.issue(
                der,
                dns_names=wanted,
                subject=subject,
                door="acme",
                profile=profile,
                account_uri=f"{self.base}acme/acct/{account_id}",
            )
        except ShirushiError as exc:
            problem = from_error(exc, csr=True)
            failed = {**processing, "status": "invalid", "error": problem.document()}
            self.objects.put(ORDER, order_id, failed, now)
            raise problem from None
        serial = format(issued.record.serial, "x")
        self.objects.put(CERT, serial, {"order": order_id, "names": wanted}, now, owner=account_id, lookup=serial)
        done = {**processing, "status": "valid", "certificate": serial}
        self.objects.put(ORDER, order_id, done, now)
        return done

    def _profile(self, account: dict[str, Any]) -> tuple[str, str | None]:
        """The profile ACME gives (docs/acme.md). ACME proves domain control only (BR 3.2.2.4),
        so organisation fields can only come from the account's External Account Binding to an
        organisation the RA validated (policy 3.2.2): such an account gets OV with that subject.
        Any other account gets DV when `acme.profile = "dv"` allows it, else a clear refusal."""
        acme = self.settings.acme
        subject = acme.eab_subject(account.get("eab_kid") or "")
        if subject is not None:
            return "ov", subject
        if acme.profile == "dv":
            return "dv", None
        raise Problem(
            "unauthorized",
            'this CA issues OV certificates only (acme.profile = "ov"): the account needs an external '
            "account binding to an organisation the RA validated (policy 3.2.2)",
        )

    def certificate_chain(self, account_id: str | None, serial_hex: str) -> bytes:
        if account_id is not None:
            self._owned(CERT, serial_hex, account_id)
        rec = self.backend.store.certificate(int(serial_hex, 16))
        if rec is None:
            raise Problem("malformed", "no such certificate", status=404)
        cert = x509.load_der_x509_certificate(rec.der)
        issuing = self.backend.authority.hierarchy().issuing
        return cert.public_bytes(serialization.Encoding.PEM) + issuing.public_bytes(serialization.Encoding.PEM)

    def _owned(self, kind: str, id: str, account_id: str | None) -> dict[str, Any]:
        found = self.objects.get(kind, id)
        if found is None:
            raise Problem("malformed", f"no such {kind}", status=404)
        if account_id is not None and self.objects.owner(kind, id) != account_id:
            raise Problem("unauthorized", f"this {kind} belongs to another account")
        return found


def _retry_after(times: list[dt.datetime], limit: int, window: dt.timedelta, now: dt.datetime) -> int:
    """Seconds until enough of `times` (oldest first) leave the window to fall under `limit`."""
    frees_at = times[len(times) - limit] + window
    return int((frees_at - now).total_seconds()) + 1


def _csr_names(request: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        cn = request.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(cn[0].value)] if cn else []
