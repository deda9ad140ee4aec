"""The configuration sections of the services around the CA core: records retention, presigning,
logs, metrics, the ACME server, domain validation, outside CAs. Plain frozen dataclasses with
their defaults and `validate()`; `config.py` loads them. No I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from shirushi.config_values import parse_listen, secret
from shirushi.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ArchiveSettings:
    # Policy 5.5.2: records are kept at least this many years after the certificate expires;
    # `serve` then prunes them (archive/retention.py). 0 = keep them forever. Archived CRLs
    # follow crl.archive_retention_years.
    retention_years: int = 7
    # How often `serve` runs the retention job.
    retention_interval: dt.timedelta = dt.timedelta(hours=24)

    def validate(self) -> None:
        if not 0 <= self.retention_years <= 100:
            raise ConfigError("archive.retention_years must be between 0 (keep forever) and 100")
        if not dt.timedelta(seconds=1) <= self.retention_interval <= dt.timedelta(days=31):
            raise ConfigError("archive.retention_interval must be between 1s and 31 days")


@dataclasses.dataclass(frozen=True)
class PresignSettings:
    interval: dt.timedelta = dt.timedelta(hours=24)
    validity: dt.timedelta = dt.timedelta(hours=96)
    # Processes that sign in parallel; 0 = one per core.
    workers: int = 0
    # Certificates per Redis pipeline.
    batch: int = 500

    def validate(self) -> None:
        # BR 4.9.9/4.9.10: 8 h <= validity <= 10 days; refreshed >= 8 h before nextUpdate.
        if not dt.timedelta(hours=8) <= self.validity < dt.timedelta(days=10):
            raise ConfigError("presign.validity must be at least 8h and under 10 days (BR 4.9.10)")
        if self.interval > self.validity - dt.timedelta(hours=8) or self.interval > dt.timedelta(days=4):
            raise ConfigError("presign.interval must leave 8h before nextUpdate and be at most 4 days (BR 4.9.10)")
        if self.workers < 0 or self.batch < 1:
            raise ConfigError("presign.workers must be >= 0 and presign.batch >= 1")


@dataclasses.dataclass(frozen=True)
class LogSettings:
    # Operational log of `serve` and `responder` on stderr: "text" or "json" (one object a line).
    format: str = "text"
    level: str = "info"

    def validate(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"log.format must be 'text' or 'json', not {self.format!r}")
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log.level must be debug, info, warning or error, not {self.level!r}")


@dataclasses.dataclass(frozen=True)
class MetricsSettings:
    # Prometheus text at GET /metrics, with GET /healthz and /readyz; "" disables. Under `serve`
    # it covers the backend and every responder worker; a lone `shirushi responder` serves its own.
    listen: str = "127.0.0.1:9108"

    def validate(self) -> None:
        if self.listen:
            parse_listen(self.listen)


@dataclasses.dataclass(frozen=True)
class ACMESettings:
    # The ACME server (RFC 8555, acme/); "" = off.
    listen: str = ""
    # Public base URL ending in "/"; the directory is {url}directory. "" = http://{listen}/.
    url: str = ""
    # An account bound by EAB to an organisation in `eab_organisations` gets OV with its fields
    # (policy 3.2.2); any other account: "dv" = DV (domain control only), "ov" = refused
    # (docs/acme.md).
    profile: str = "dv"
    # External Account Binding (RFC 8555 7.3.4): required when set. Keys are named in
    # `eab_keys` as "KID=ENV_VAR" (the HMAC key, base64url, read from that variable).
    eab_required: bool = False
    eab_keys: tuple[str, ...] = ()
    # "KID|SUBJECT": the organisation the RA validated for a binding (profile "ov", policy 3.2.2).
    eab_organisations: tuple[str, ...] = ()
    # Rate limits (BR 4.2.1 does not set them; they bound abuse): per account and per name.
    orders_per_account_per_hour: int = 300
    certificates_per_name_per_week: int = 50

    def base_url(self) -> str:
        if self.url:
            return self.url if self.url.endswith("/") else self.url + "/"
        return f"http://{self.listen}/"

    def eab_key(self, kid: str) -> bytes | None:
        """The HMAC key of an EAB key id, from its environment variable (never logged)."""
        import base64

        for entry in self.eab_keys:
            name, _, env = entry.partition("=")
            if name == kid and env:
                raw = secret("", env, f"acme.eab_keys[{name}]")
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return None

    def eab_subject(self, kid: str) -> str | None:
        for entry in self.eab_organisations:
            name, _, subject = entry.partition("|")
            if name == kid and subject:
                return subject
        return None

    def validate(self) -> None:
        if self.listen:
            parse_listen(self.listen)
        if self.profile not in ("dv", "ov"):
            raise ConfigError(f"acme.profile must be 'dv' or 'ov', not {self.profile!r}")
        for entry in self.eab_keys:
            if "=" not in entry:
                raise ConfigError(f"acme.eab_keys entry {entry!r} must be KID=ENV_VAR")
        if self.eab_organisations:
            self._check_eab_organisations()

    def _check_eab_organisations(self) -> None:
        # Imported only when there are any: it costs a CLI command the cryptography import.
        from shirushi.ca.names import parse_name
        from shirushi.errors import InputError

        for entry in self.eab_organisations:
            kid, sep, subject = entry.partition("|")
            if not sep or not kid or not subject:
                raise ConfigError(f"acme.eab_organisations entry {entry!r} must be KID|SUBJECT")
            try:
                parse_name(subject)  # checked now, so a typo never reaches an issuance
            except InputError as exc:
                raise ConfigError(f"acme.eab_organisations[{kid}]: {exc}") from None
        if self.orders_per_account_per_hour < 1 or self.certificates_per_name_per_week < 1:
            raise ConfigError("acme rate limits must be at least 1")


DOORS = ("acme", "api", "cli")


@dataclasses.dataclass(frozen=True)
class ValidationSettings:
    # "IP:PORT" of the DNS resolver for domain validation and CAA; "" = the system's.
    resolver: str = ""
    # Port the BR 3.2.2.4.18 / 3.2.2.4.19 (http-01) fetch connects to; BR: 80 only in production.
    http_port: int = 80
    # Issuer domain names CAA issue / issuewild must name (RFC 8659 4.2, policy 4.2.4).
    caa_identities: tuple[str, ...] = ("shirushi.example",)
    # Tests only: let validation connect to loopback addresses (never private ones).
    allow_loopback: bool = False
    # Doors whose issuance must pass DV + CAA (BR 1.3.2: a publicly trusted CA lists all three).
    enforce: tuple[str, ...] = ("acme",)

    def validate(self) -> None:
        if self.resolver:
            parse_listen(self.resolver)
        if not 1 <= self.http_port <= 65535:
            raise ConfigError("validation.http_port must be a TCP port")
        if not self.caa_identities:
            raise ConfigError("validation.caa_identities must name at least one issuer domain")
        unknown = [d for d in self.enforce if d not in DOORS]
        if unknown:
            raise ConfigError(f"validation.enforce may list {', '.join(DOORS)}, not {', '.join(unknown)}")


@dataclasses.dataclass(frozen=True)
class OutsideSettings:
    """What `serve` follows of outside CAs (`issuer add`): entries are "NAME=PATH" or "NAME=URL"."""

    # OpenSSL `ca` / easy-rsa index files, reread when they change (checked every poll_interval).
    follow_index: tuple[str, ...] = ()
    # CRLs (file or http(s) URL), fetched every crl_interval and when the last one's nextUpdate
    # has passed.
    follow_crl: tuple[str, ...] = ()
    poll_interval: dt.timedelta = dt.timedelta(seconds=2)
    crl_interval: dt.timedelta = dt.timedelta(minutes=5)

    def follows(self, entries: tuple[str, ...]) -> list[tuple[str, str]]:
        return [(name.strip(), where.strip()) for name, _, where in (e.partition("=") for e in entries)]

    def validate(self) -> None:
        for key in ("follow_index", "follow_crl"):
            for entry in getattr(self, key):
                name, sep, where = entry.partition("=")
                if not sep or not name.strip() or not where.strip():
                    raise ConfigError(f"outside.{key}: {entry!r} is not NAME=PATH (or NAME=URL)")
