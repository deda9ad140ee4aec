"""Settings: TOML file, environment overrides, defaults and errors (README, Configuration)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from shirushi import config, config_values
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
    assert settings.crl.validity == dt.timedelta(hours=96)
    assert settings.presign.interval == dt.timedelta(hours=24)


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
    assert config_values.parse_duration(text) == dt.timedelta(seconds=seconds)


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


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc" / "shirushi.toml"
    conf.parent.mkdir()
    conf.write_text(
        'data_dir = "ca-data"\n'
        '[database]\nurl = "sqlite:///db/x.db"\n'
        '[ocsp]\nissuers = "certs/issuers.pem"\naccess_log = "/var/log/ocsp.log"\n'
        '[repository]\ndocuments = "../docs"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = config.load("../etc/shirushi.toml", environ={})  # relative to the current directory
    etc = tmp_path / "etc"
    assert settings.data_path == etc / "ca-data"
    assert settings.database_url == f"sqlite:///{etc}/db/x.db"
    assert settings.ocsp.issuers == str(etc / "certs/issuers.pem")
    assert settings.ocsp.access_log == "/var/log/ocsp.log"  # absolute: kept
    assert Path(settings.repository.documents).resolve() == tmp_path / "docs"
    # The environment's relative values stay relative to the current directory.
    env = config.load(conf, environ={"SHIRUSHI_DATA_DIR": "here", "SHIRUSHI_OCSP__ISSUERS": "i.pem"})
    assert env.data_path == elsewhere / "here"
    assert env.ocsp.issuers == "i.pem"
    # Keys not set in the file keep the default, relative to the current directory.
    assert config.load(write(tmp_path, ""), environ={}).data_path == elsewhere / "var/shirushi"


@pytest.mark.e2e
def test_config_file_from_another_directory_finds_the_same_ca(tmp_path: Path) -> None:
    """`shirushi --config /abs/ca.toml ...` run from anywhere uses the data_dir beside the file."""
    from support.pki import cli_env, run_cli

    conf = tmp_path / "site" / "ca.toml"
    conf.parent.mkdir()
    conf.write_text('data_dir = "data"\n')
    env = {k: v for k, v in cli_env(tmp_path).items() if k != "SHIRUSHI_DATA_DIR"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    init = run_cli(["--config", str(conf), "init"], env, cwd=tmp_path / "a")
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "site" / "data" / "shirushi.db").exists()
    assert not (tmp_path / "a" / "data").exists()
    certs = run_cli(["--config", str(conf), "ca-certs"], env, cwd=tmp_path / "b")
    assert certs.returncode == 0, certs.stderr
    assert certs.stdout.startswith("-----BEGIN CERTIFICATE-----")
    # A relative --config is taken from the current directory, its paths from the file's.
    relative = run_cli(["--config", "../site/ca.toml", "ca-certs"], env, cwd=tmp_path / "b")
    assert relative.returncode == 0 and relative.stdout == certs.stdout, relative.stderr


def test_subscriber_key_types(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, ""), environ={}).ca.subscriber_key_types == ("rsa",)
    both = config.load(write(tmp_path, '[ca]\nsubscriber_key_types = ["rsa", "ecdsa-p256"]\n'), environ={})
    assert both.ca.subscriber_key_types == ("rsa", "ecdsa-p256")
    env = config.load(None, environ={"SHIRUSHI_CA__SUBSCRIBER_KEY_TYPES": "ecdsa-p384, rsa"})
    assert env.ca.subscriber_key_types == ("ecdsa-p384", "rsa")
    for text, message in [
        ('[ca]\nsubscriber_key_types = ["dsa"]\n', "ca.subscriber_key_types ['dsa'] must list"),
        ("[ca]\nsubscriber_key_types = []\n", "must list one or more"),
        ('[ca]\nsubscriber_key_types = ["rsa", "rsa"]\n', "distinct"),
        ("[ca]\nsubscriber_key_types = [1]\n", "expected a list of strings"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            config.load(write(tmp_path, text), environ={})


def test_issuing_ca_policy_and_eab_organisations_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="issuing_ca_policy"):
        config.load(environ={"SHIRUSHI_CA__ISSUING_CA_POLICY": "both"})
    path = tmp_path / "c.toml"
    path.write_text('[acme]\neab_organisations = ["org|C=JP, X=Nowhere"]\n')
    with pytest.raises(ConfigError, match=r"eab_organisations\[org\]"):
        config.load(path, environ={})
    path.write_text('[acme]\neab_organisations = ["no-subject"]\n')
    with pytest.raises(ConfigError, match=r"KID\|SUBJECT"):
        config.load(path, environ={})
    path.write_text('[acme]\neab_organisations = ["org|C=JP, ST=Tokyo, L=Chiyoda-ku, O=Example"]\n')
    assert config.load(path, environ={}).acme.eab_subject("org") == "C=JP, ST=Tokyo, L=Chiyoda-ku, O=Example"
