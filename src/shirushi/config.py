"""Settings: one TOML file, overridden by `SHIRUSHI_<SECTION>__<KEY>` environment variables.

Every key has a default, so an empty file is valid; unknown sections or keys are refused with a
message naming them. Relative paths written in the file are taken relative to the file's own
directory (so `--config /etc/x.toml` means the same from any directory); relative paths from the
environment or the defaults are relative to the current directory. Settings are frozen once
loaded. Durations are written "24h" and held as `timedelta`, parsed once here (the value parsers
are in `config_values`). Secrets (PINs, tokens, passphrases) are read through helpers and never
appear in `repr()` or logs. Paths under the data directory come from `Settings.layout`.
Reads files and the environment; nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from shirushi.config_services import (
    ACMESettings,
    ArchiveSettings,
    LogSettings,
    MetricsSettings,
    OutsideSettings,
    PresignSettings,
    ValidationSettings,
)
from shirushi.config_status import CRLSettings, OCSPSettings, RedisSettings
from shirushi.config_tokens import APITokenSettings, check_tokens
from shirushi.config_values import coerce, parse_listen, secret
from shirushi.errors import ConfigError
from shirushi.layout import Layout

ENV_PREFIX = "SHIRUSHI_"
CONFIG_ENV = "SHIRUSHI_CONFIG"

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
# Keys holding file-system paths: relative ones in a file are anchored at the file's directory.
PATH_KEYS = (
    ("", "data_dir"),
    ("pkcs11", "module"),
    ("ocsp", "issuers"),
    ("ocsp", "access_log"),
    ("repository", "documents"),
    ("ca", "weak_key_lists"),
)
SQLITE_PREFIX = "sqlite:///"
# Subscriber key types (BR 6.1.5): RSA as the policy's profile; ECDSA on the NIST curves on request.
SUBSCRIBER_KEY_TYPES = ("rsa", "ecdsa-p256", "ecdsa-p384")


@dataclasses.dataclass(frozen=True)
class CASettings:
    key_backend: str = "file"
    subject: str = "C=JP, O=Shirushi Demo, CN=Shirushi Demo Issuing CA"
    root_subject: str = "C=JP, O=Shirushi Demo, CN=Shirushi Demo Root CA"
    ocsp_signer_subject: str = "C=JP, O=Shirushi Demo, CN=Shirushi Demo OCSP Responder"
    root_validity_days: int = 7300
    validity_days: int = 3650
    ocsp_signer_validity_days: int = 369
    # The policy's own OID for the CP (policy 1.2) and the CPS URI qualifier (table 7.1-1).
    policy_oid: str = "1.3.6.1.4.1.99999.1.1"
    cps_uri: str = "http://127.0.0.1:8081/cps"
    # Policy 6.3.2: at most 398 days; the BR schedule in force is applied on top (ca/validity.py).
    max_validity_days: int = 398
    # Environment variable holding the passphrase of the PKCS#8 key files ("" = unencrypted).
    key_passphrase_env: str = ""
    # pkilint findings caused only by loopback/IP URLs in a test or demo config are tolerated.
    lint_allow_local_urls: bool = True
    # Renew the OCSP signer certificate when less than this much of its life is left.
    ocsp_signer_renew_before: dt.timedelta = dt.timedelta(days=30)
    # Subscriber key types accepted in CSRs (BR 6.1.5): "rsa", "ecdsa-p256", "ecdsa-p384".
    subscriber_key_types: tuple[str, ...] = ("rsa",)
    # Files of weak-key fingerprints refused at issuance (BR 6.1.1.3): Debian's openssl-blacklist
    # lists, SPKI SHA-256 lists (ca/weak_keys.py, docs/ra.md). None is shipped.
    weak_key_lists: tuple[str, ...] = ()
    # The issuing CA's certificatePolicies, fixed when `init` certifies it (BR 7.1.2.10.5: exactly
    # one reserved identifier, or anyPolicy alone for a CA affiliated with its root): "ov"
    # (2.23.140.1.2.2 + the CP OID; OV only), "dv" (2.23.140.1.2.1 + the CP OID; DV only),
    # "any" (anyPolicy: OV and DV, e.g. ACME with External Account Binding; docs/acme.md).
    issuing_ca_policy: str = "ov"

    def validate(self) -> None:
        if self.issuing_ca_policy not in ("ov", "dv", "any"):
            raise ConfigError(f"ca.issuing_ca_policy must be 'ov', 'dv' or 'any', not {self.issuing_ca_policy!r}")
        if not _OID.match(self.policy_oid):
            raise ConfigError(f"ca.policy_oid {self.policy_oid!r} is not a dotted OID like 1.3.6.1.4.1.99999.1.1")
        # Policy 5.6 / 6.3.2: CA keys live at most 20 years.
        for key in ("root_validity_days", "validity_days", "ocsp_signer_validity_days"):
            if not 1 <= getattr(self, key) <= 7300:
                raise ConfigError(f"ca.{key} must be between 1 and 7300 days (policy 6.3.2)")
        if self.key_backend not in ("file", "pkcs11"):
            raise ConfigError(f"ca.key_backend must be 'file' or 'pkcs11', not {self.key_backend!r}")
        if not 1 <= self.max_validity_days <= 398:
            raise ConfigError("ca.max_validity_days must be between 1 and 398 (policy 6.3.2)")
        unknown = [t for t in self.subscriber_key_types if t not in SUBSCRIBER_KEY_TYPES]
        if (
            unknown
            or not self.subscriber_key_types
            or len(set(self.subscriber_key_types)) != len(self.subscriber_key_types)
        ):
            raise ConfigError(
                f"ca.subscriber_key_types {list(self.subscriber_key_types)!r} must list one or more distinct "
                f"of {', '.join(SUBSCRIBER_KEY_TYPES)} (BR 6.1.5)"
            )

    def passphrase(self) -> bytes | None:
        if not self.key_passphrase_env:
            return None
        return secret("", self.key_passphrase_env, "ca.key_passphrase_env").encode()


@dataclasses.dataclass(frozen=True)
class PKCS11Settings:
    module: str = "/usr/lib/softhsm/libsofthsm2.so"
    token_label: str = "shirushi"
    user_pin: str = dataclasses.field(default="1234", repr=False)
    user_pin_env: str = ""
    # Sessions kept open for signing; 0 = one per core.
    sessions: int = 0

    def pin(self) -> str:
        return secret(self.user_pin, self.user_pin_env, "pkcs11.user_pin_env")

    def validate(self) -> None:
        if self.sessions < 0:
            raise ConfigError("pkcs11.sessions must be >= 0")


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""

    def validate(self) -> None:
        if self.url and not self.url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ConfigError("database.url must be empty, sqlite:///PATH or postgresql://...")


@dataclasses.dataclass(frozen=True)
class RepositorySettings:
    listen: str = "127.0.0.1:8081"
    url: str = "http://127.0.0.1:8081/"
    # Directory with cp.txt and cps.txt to publish; empty = the packaged placeholders.
    documents: str = ""

    def validate(self) -> None:
        parse_listen(self.listen)


@dataclasses.dataclass(frozen=True)
class APISettings:
    listen: str = "127.0.0.1:8082"
    token: str = dataclasses.field(default="", repr=False)
    token_env: str = ""
    # Named tokens with roles, `[[api.tokens]]` (config_tokens.py); `token` acts as one with every role.
    tokens: tuple[APITokenSettings, ...] = ()
    # Open routes (problem reports, key-compromise challenges): requests per minute per client address.
    open_requests_per_minute: int = 10

    def bearer_token(self) -> str:
        return secret(self.token, self.token_env, "api.token_env")

    def validate(self) -> None:
        parse_listen(self.listen)
        check_tokens(self.tokens)
        if not 1 <= self.open_requests_per_minute <= 10000:
            raise ConfigError("api.open_requests_per_minute must be between 1 and 10000")


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: str = "var/shirushi"
    ca: CASettings = CASettings()
    pkcs11: PKCS11Settings = PKCS11Settings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    ocsp: OCSPSettings = OCSPSettings()
    repository: RepositorySettings = RepositorySettings()
    api: APISettings = APISettings()
    crl: CRLSettings = CRLSettings()
    archive: ArchiveSettings = ArchiveSettings()
    presign: PresignSettings = PresignSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    outside: OutsideSettings = OutsideSettings()
    acme: ACMESettings = ACMESettings()
    validation: ValidationSettings = ValidationSettings()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def layout(self) -> Layout:
        return Layout(self.data_path)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.layout.database}"

    @property
    def redis_url(self) -> str:
        return self.redis.url or f"unix://{self.layout.redis_socket}"


def _build(cls: Any, data: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        place = f"[{where}]" if where else "top level"
        raise ConfigError(
            f"unknown configuration key {', '.join(unknown)} in {place}; known keys: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        typ = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a table [{name}]")
            kwargs[name] = _build(typ, value, name)
        elif get_origin(typ) is tuple and dataclasses.is_dataclass(get_args(typ)[0]):
            # An array of tables, [[api.tokens]].
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise ConfigError(f"{key} must be an array of tables [[{key}]]")
            kwargs[name] = tuple(_build(get_args(typ)[0], v, key) for v in value)
        else:
            kwargs[name] = coerce(value, typ, key)
    return cls(**kwargs)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn SHIRUSHI_SECTION__KEY=value (and SHIRUSHI_DATA_DIR) into a nested dict."""
    out: dict[str, Any] = {}
    section_names = {n for n, t in get_type_hints(Settings).items() if dataclasses.is_dataclass(t)}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if "__" in rest:
            section, key = rest.split("__", 1)
            if section not in section_names:
                raise ConfigError(f"{name}: unknown configuration section {section!r}")
            out.setdefault(section, {})[key] = value
        elif rest == "data_dir":
            out["data_dir"] = value
        # Other SHIRUSHI_* variables (PINs, tokens named by *_env keys) are not settings.
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _anchor(value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [_anchor(v, base) for v in value]
    if not isinstance(value, str) or not value or value.startswith("~") or os.path.isabs(value):
        return value  # empty = "use the default"; other types are refused later with the key's name
    return str(base / value)


def _anchor_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file's relative paths relative to `base`, the file's directory."""
    out = dict(data)
    for section, key in PATH_KEYS:
        table = out if not section else out.get(section)
        if isinstance(table, dict) and key in table:
            if section:
                table = out[section] = dict(table)
            table[key] = _anchor(table[key], base)
    database = out.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        url: str = database["url"]
        # sqlite:///relative/path (three slashes, then a relative path; four for an absolute one).
        if url.startswith(SQLITE_PREFIX) and not url.startswith(SQLITE_PREFIX + "/"):
            out["database"] = {**database, "url": SQLITE_PREFIX + _anchor(url[len(SQLITE_PREFIX) :], base)}
    return out


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from `path` (or $SHIRUSHI_CONFIG, or none) and the environment."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        data = _anchor_paths(data, Path(os.path.abspath(path)).parent)
    data = _merge(data, _env_overrides(environ))
    settings: Settings = _build(Settings, data, "")
    try:
        for field in dataclasses.fields(settings):
            section = getattr(settings, field.name)
            if hasattr(section, "validate"):
                section.validate()
        _check_together(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


def _check_together(settings: Settings) -> None:
    """Rules that span sections."""
    renew = settings.ca.ocsp_signer_renew_before
    needed = settings.presign.validity + settings.presign.interval
    # Mozilla policy: no response outlives the signer certificate. The signer is renewed while
    # every response that can still be signed under it fits in its remaining life.
    if renew <= needed:
        raise ConfigError(
            "ca.ocsp_signer_renew_before must be longer than presign.validity + presign.interval "
            f"({needed}), or responses could not be signed before the signer is renewed"
        )
    if renew >= dt.timedelta(days=settings.ca.ocsp_signer_validity_days):
        raise ConfigError("ca.ocsp_signer_renew_before must be shorter than ca.ocsp_signer_validity_days")
