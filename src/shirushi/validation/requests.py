"""Domain validation outside ACME, for the RA doors (`shirushi validate`): a random value is
handed out for one name and method, the applicant places it, and one check records the result
the domain gate relies on (policy 3.2.7, BR 3.2.2.4). Does I/O (store, DNS, HTTP).

Methods: "dns" (BR 3.2.2.4.7: TXT at `_acme-challenge.<name>`; may cover `*.<name>`) and
"website" (BR 3.2.2.4.18: the value in `/.well-known/pki-validation/<id>.txt` over HTTP on
`validation.http_port`; never a wildcard). A value is single use (checked once, then used up
whatever the outcome) and good for 30 days (values.VALUE_LIFETIME). The request is kept as an
`acme_objects` row of kind "dv-request", so no table of its own is needed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Any

from shirushi.ca.csr import normalise_dns_name
from shirushi.config import Settings
from shirushi.errors import InputError, NotFoundError, PolicyError, ValidationError
from shirushi.store.acme import ACMEObjects, ValidationRecords
from shirushi.validation import dns_change, values, website_change
from shirushi.validation.attempt import Attempt
from shirushi.validation.dns import Resolver
from shirushi.validation.record import record_attempt

KIND = "dv-request"
METHODS = ("dns", "website")


@dataclasses.dataclass(frozen=True)
class Request:
    id: str
    name: str
    method: str
    value: str
    created: dt.datetime
    status: str  # "pending", then "valid" or "invalid" (used up either way)

    def where(self, http_port: int) -> str:
        """What the applicant does with the value, in one line."""
        base = self.name.removeprefix("*.")
        if self.method == "dns":
            return f'add a TXT record {dns_change.LABEL}.{base} with the value "{self.value}"'
        port = "" if http_port == 80 else f":{http_port}"
        return f"serve the value at http://{base}{port}{website_change.PREFIX}{self.id}.txt"

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "value": self.value,
            "created": self.created.isoformat(),
            "status": self.status,
        }


def _name(text: str, method: str) -> str:
    wildcard = text.strip().startswith("*.")
    base = normalise_dns_name(text.strip().removeprefix("*."))
    if wildcard and method != "dns":
        # BR 3.2.2.4: only the DNS-based methods may validate a wildcard.
        raise PolicyError(f"{text}: a wildcard can be validated only by the DNS method (BR 3.2.2.4.7)")
    return ("*." if wildcard else "") + base


def start(objects: ACMEObjects, name: str, method: str, now: dt.datetime) -> Request:
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    # Hex, not URL-safe base64: an id starting with "-" would read as an option on the CLI.
    request = Request(secrets.token_hex(12), _name(name, method), method, values.new_value(), now, "pending")
    objects.put(KIND, request.id, request.data(), now)
    return request


def load(objects: ACMEObjects, request_id: str) -> Request:
    data = objects.get(KIND, request_id)
    if data is None:
        raise NotFoundError(f"no validation request {request_id!r}")
    created = dt.datetime.fromisoformat(data["created"])
    return Request(request_id, data["name"], data["method"], data["value"], created, data["status"])


def check(
    settings: Settings,
    objects: ACMEObjects,
    records: ValidationRecords,
    resolver: Resolver,
    request_id: str,
    now: dt.datetime,
) -> Attempt:
    """Check once; the attempt is audited, a success recorded for the gate. Raises
    ValidationError when the value is used, expired or not found where it should be."""
    request = load(objects, request_id)
    if request.status != "pending":
        raise ValidationError(
            f"validation request {request_id} was already checked ({request.status}): values are single use"
        )
    if values.expired(request.created, now):
        raise ValidationError(f"validation request {request_id} expired (30 days, policy 3.2.7); start a new one")
    used = dataclasses.replace(request, status="processing")
    if not objects.swap(KIND, request_id, request.data(), used.data()):
        raise ValidationError(f"validation request {request_id} is being checked elsewhere")
    v = settings.validation
    if request.method == "dns":
        attempt = dns_change.check(resolver, request.name, request.value)
    else:
        attempt = website_change.check(
            resolver,
            request.name,
            f"{request.id}.txt",
            request.value,
            port=v.http_port,
            allow_loopback=v.allow_loopback,
        )
    record_attempt(records, attempt, now)
    objects.put(KIND, request_id, dataclasses.replace(request, status="valid" if attempt.ok else "invalid").data(), now)
    if not attempt.ok:
        raise ValidationError(
            f"{request.name}: BR {attempt.method} failed: {attempt.detail}",
            problem=attempt.problem,
            names=(request.name,),
        )
    return attempt
