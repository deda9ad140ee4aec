"""Settings: TOML file, environment overrides, defaults and errors (README, Configuration)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from shirushi import config
from shirushi.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shirushi.toml"
    path.write_text(text)
    return path


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, ""), environ={})
    assert settings == config.Settings()
    assert settings.ca.key_backend == "file"
    assert settings.ocsp.listen == "127.0.0.1:8080"
    assert settings.crl.validity == "96h"
    assert settings.presign.interval == "24h"


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/srv/ca"\n[redis]\nurl = "redis://127.0.0.1:6379/0"\n[ocsp]\nworkers = 2\n')
    settings = config.load(path, environ={})
    assert settings.data_dir == "/srv/ca"
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.ocsp.workers == 2


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "redis://file"\n')
    env = {
        "SHIRUSHI_REDIS__URL": "redis://env",
        "SHIRUSHI_OCSP__WORKERS": "3",
        "SHIRUSHI_DATA_DIR": "/x",
        "SHIRUSHI_CA__LINT_ALLOW_LOCAL_URLS": "false",
    }
    settings = config.load(path, environ=env)
    assert settings.redis.url == "redis://env"
    assert settings.ocsp.workers == 3
    assert settings.data_dir == "/x"
    assert settings.ca.lint_allow_local_urls is False


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[ca]\nsubject = "C=JP, O=Env, CN=Env CA"\n')
    settings = config.load(None, environ={"SHIRUSHI_CONFIG": str(path)})
    assert settings.ca.subject == "C=JP, O=Env, CN=Env CA"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("colour = 1\n", {}, "unknown configuration key colour in top level"),
        ("[redis]\nport = 1\n", {}, "unknown configuration key port in [redis]"),
        ("[nosuch]\nx = 1\n", {}, "unknown configuration key nosuch"),
        ("", {"SHIRUSHI_NOSUCH__X": "1"}, "unknown configuration section 'nosuch'"),
        ("", {"SHIRUSHI_OCSP__NOSUCH": "1"}, "unknown configuration key nosuch in [ocsp]"),
        ("[ocsp]\nworkers = 'many'\n", {}, "ocsp.workers: expected int"),
        ("[crl]\nvalidity = '96 hours'\n", {}, "is not a duration"),
        ("[crl]\nvalidity = '11d'\n", {}, "at most 10 days"),
        ("[presign]\nvalidity = '4h'\n", {}, "at least 8h"),
        ("[presign]\ninterval = '90h'\n", {}, "leave 8h before nextUpdate"),
        ("[ca]\nkey_backend = 'tpm'\n", {}, "must be 'file' or 'pkcs11'"),
        ("[ocsp]\nlisten = 'nowhere'\n", {}, "is not host:port"),
        ("[ca]\nmax_validity_days = 500\n", {}, "between 1 and 398"),
        ("ocsp = 1\n", {}, "ocsp must be a table"),
        ("not toml [", {}, "is not valid TOML"),
    ],
)
def test_bad_settings_are_refused_with_a_message(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, text), environ=env)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", environ={})


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    path = write(tmp_path, '[pkcs11]\nuser_pin = "s3cret-pin"\n[api]\ntoken = "s3cret-token"\n')
    settings = config.load(path, environ={})
    assert "s3cret" not in repr(settings)
    assert settings.pkcs11.pin() == "s3cret-pin"
    assert settings.api.bearer_token() == "s3cret-token"


def test_secrets_from_named_environment_variables(tmp_path: Path) -> None:
    path = write(tmp_path, '[pkcs11]\nuser_pin_env = "MY_PIN"\n')
    settings = config.load(path, environ={})
    with pytest.raises(ConfigError, match="MY_PIN is not set"):
        settings.pkcs11.pin()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert config.parse_duration(text) == dt.timedelta(seconds=seconds)


def test_example_config_documents_every_key() -> None:
    """config/shirushi.example.toml sets every key, and loads."""
    example = Path(__file__).parent.parent / "config" / "shirushi.example.toml"
    settings = config.load(example, environ={})
    import tomllib

    data = tomllib.loads(example.read_text())
    for field in dataclasses.fields(settings):
        assert field.name in data, f"{field.name} missing from the example"
        section = getattr(settings, field.name)
        if dataclasses.is_dataclass(section):
            for sub in dataclasses.fields(section):
                assert sub.name in data[field.name], f"{field.name}.{sub.name} missing from the example"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[crl]\ninterval = '99999999999999d'\n", "at most 20 years"),
        ("[redis]\nurl = 'http://x'\n", "redis.url must start with"),
        ("[redis]\ntimeout = -1\n", "redis.timeout"),
        ("[database]\nurl = 'mysql://x'\n", "database.url"),
        ("[ca]\npolicy_oid = '1.2.three'\n", "not a dotted OID"),
        ("[ca]\nvalidity_days = 0\n", "ca.validity_days must be between"),
        ("[ca]\nocsp_signer_renew_before = '4d'\n", "longer than presign.validity"),
        ("[ca]\nocsp_signer_renew_before = '400d'\n", "shorter than ca.ocsp_signer_validity_days"),
    ],
)
def test_values_checked_at_load(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, text), environ={})


def test_a_mistyped_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "[pkcs11]\nuser_pin = 98765\n"), environ={})
    assert "98765" not in str(info.value) and "pkcs11.user_pin" in str(info.value)
