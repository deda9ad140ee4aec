"""The domain check every door in `validation.enforce` runs before signing (BR 3.2.2.4, 3.2.2.8).

For each name: a validation record still inside its reuse period (a wildcard needs a DNS-based
one of its base name), and CAA allowing us, looked up now (BR 3.2.2.8: at issuance, even for
names validated earlier). What it found goes into the issuance's audit record; a refusal is
audited on its own and raised as a ValidationError. Does I/O (DNS, the store).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shirushi.config import Settings
from shirushi.errors import ValidationError
from shirushi.store.acme import ValidationRecords, audit_event
from shirushi.validation import caa
from shirushi.validation.dns import Resolver


class DomainGate:
    def __init__(self, settings: Settings, records: ValidationRecords, resolver: Resolver | None = None) -> None:
        self.settings = settings
        self.records = records
        self.resolver = resolver or Resolver(settings.validation.resolver)

    def enforced(self, door: str) -> bool:
        return door in self.settings.validation.enforce

    def check(self, names: list[str], door: str, now: dt.datetime, *, account_uri: str | None = None) -> dict[str, Any]:
        """The audit detail of a pass; raises ValidationError (audited) otherwise."""
        validations: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        try:
            for name in names:
                validations.append(self._validated(name, now))
            for name in names:
                method = validations[names.index(name)]["acme_method"]
                result = caa.check(
                    self.resolver,
                    name,
                    self.settings.validation.caa_identities,
                    account_uri=account_uri,
                    method=method,
                )
                results.append(result.audit())
                if not result.allowed:
                    raise ValidationError(
                        f"CAA forbids issuance for {name}: {result.reason}", problem="caa", names=(name,)
                    )
        except ValidationError as exc:
            audit_event(
                self.records.engine,
                now,
                "issuance-refused",
                {"door": door, "names": names, "reason": str(exc), "validations": validations, "caa": results},
            )
            raise
        return {"door": door, "validations": validations, "caa": results}

    def _validated(self, name: str, now: dt.datetime) -> dict[str, Any]:
        wildcard = name.startswith("*.")
        base = name.removeprefix("*.")
        for v in self.records.current(base, now):
            if wildcard and not v.wildcard:
                continue
            return {
                "name": name,
                "method": f"BR {v.method}",
                "acme_method": {"3.2.2.4.7": "dns-01", "3.2.2.4.19": "http-01"}.get(v.method),
                "validated_at": v.validated_at.isoformat(),
                "reuse_until": v.reuse_until.isoformat(),
                "account": v.account,
            }
        why = "no DNS-based validation of its base domain" if wildcard else "no domain validation"
        raise ValidationError(
            f"{name}: {why} within the reuse period (policy 3.2.7)", problem="unauthorized", names=(name,)
        )
