"""Scoped API tokens: `[[api.tokens]]` settings, the token table, and roles on a running serve."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shirushi import config
from shirushi.config_tokens import token_digest
from shirushi.errors import ConfigError
from shirushi.web.auth import SINGLE_TOKEN, TokenTable
from support.http_api import call, is_error
from support.pki import make_csr
from support.serving import Site

SINGLE = "single-token-all-roles"
RA = "ra-frontend-token-issue-read"
OPS = "ops-token-revoke-only"

TOKENS = f"""
[api]
token = "{SINGLE}"

[[api.tokens]]
name = "ra-frontend"
token = "{RA}"
roles = ["issue", "read"]

[[api.tokens]]
name = "ops"
token_env = "OPS_TOKEN"
roles = ["revoke"]
"""


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "shirushi.toml"
    path.write_text(text)
    return config.load(path, environ={})


def test_a_token_in_the_file_is_kept_only_as_its_hash(tmp_path: Path) -> None:
    settings = load(tmp_path, TOKENS)
    ra = settings.api.tokens[0]
    assert ra.name == "ra-frontend" and ra.roles == ("issue", "read")
    assert ra.token == "" and ra.token_sha256 == token_digest(RA)
    assert RA not in repr(settings) and RA not in str(vars(ra))


def test_token_table_names_and_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_TOKEN", OPS)
    table = TokenTable.from_settings(load(tmp_path, TOKENS).api)
    single = table.caller(f"Bearer {SINGLE}")
    assert single is not None and single.name == SINGLE_TOKEN and single.roles == {"issue", "revoke", "read"}
    ra = table.caller(f"bearer  {RA} ")
    assert ra is not None and ra.name == "ra-frontend" and ra.roles == {"issue", "read"}
    ops = table.caller(f"Bearer {OPS}")
    assert ops is not None and ops.roles == {"revoke"}
    for header in ("", "Bearer", "Bearer ", f"Basic {RA}", f"Bearer {RA}x", f"Bearer {RA[:-1]}", RA):
        assert table.caller(header) is None, header


def test_token_env_must_be_set_when_the_api_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_TOKEN", raising=False)
    settings = load(tmp_path, TOKENS)  # loading is fine: the variable is read by the API
    with pytest.raises(ConfigError, match="OPS_TOKEN is not set"):
        TokenTable.from_settings(settings.api)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[api.tokens]]\nname = "a"\nroles = ["read"]\n', "exactly one of token or token_env"),
        ('[[api.tokens]]\nname = "a"\ntoken = "t"\ntoken_env = "E"\nroles = ["read"]\n', "exactly one"),
        ('[[api.tokens]]\nname = "a"\ntoken = "t"\nroles = ["admin"]\n', "roles"),
        ('[[api.tokens]]\nname = "a"\ntoken = "t"\nroles = []\n', "roles"),
        ('[[api.tokens]]\nname = ""\ntoken = "t"\nroles = ["read"]\n', "name"),
        ('[[api.tokens]]\nname = "a b"\ntoken = "t"\nroles = ["read"]\n', "name"),
        (
            '[[api.tokens]]\nname = "a"\ntoken = "t"\nroles = ["read"]\n'
            '[[api.tokens]]\nname = "a"\ntoken = "u"\nroles = ["read"]\n',
            "unique",
        ),
        ('[[api.tokens]]\nname = "a"\ntoken = "t"\nroles = ["read"]\nextra = 1\n', "unknown configuration key extra"),
        ('[[api.tokens]]\nname = "a"\ntoken = 12345\nroles = ["read"]\n', "api.tokens.token: expected str, got a int"),
        ("[api]\ntokens = 3\n", "array of tables"),
        ('[[api.tokens]]\nname = "a"\ntoken = "t"\nroles = ["read"]\ntoken_sha256 = "x"\n', "unknown"),
    ],
)
def test_bad_token_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


# -- against a running serve ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("tokens")
    (root / "shirushi.toml").write_text(TOKENS)
    s = Site(root, SHIRUSHI_CONFIG=str(root / "shirushi.toml"), OPS_TOKEN=OPS)
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def audit(site: Site, action: str) -> list[tuple[str | None, str]]:
    with sqlite3.connect(site.data / "shirushi.db") as db:
        return list(db.execute("select serial, detail from audit where action = ? order by id", (action,)))


def issue(site: Site, token: str) -> tuple[int, dict[str, object]]:
    status, body, _ = call(site, "POST", "/api/v1/certificates", {"csr": make_csr().decode()}, token=token)
    return status, body


@pytest.mark.e2e
def test_roles_decide_what_each_token_may_call(site: Site) -> None:
    status, body = issue(site, RA)
    assert status == 201, body
    serial = str(body["serial"])
    status, shown, _ = call(site, "GET", f"/api/v1/certificates/{serial}", token=RA)
    assert status == 200 and shown["status"] == "good"
    # ra-frontend may not revoke; ops may revoke but neither read nor issue.
    revoke = f"/api/v1/certificates/{serial}/revoke"
    status, err, _ = call(site, "POST", revoke, {"reason": "superseded"}, token=RA)
    assert status == 403 and is_error(err) and err["error"] == "forbidden" and "'revoke'" in err["detail"], err
    status, err, _ = call(site, "GET", f"/api/v1/certificates/{serial}", token=OPS)
    assert status == 403 and is_error(err)
    status, err = issue(site, OPS)
    assert status == 403 and is_error(err)
    status, err, _ = call(site, "POST", "/api/v1/revocations", {"serials": [serial], "reason": "superseded"}, token=RA)
    assert status == 403 and is_error(err)
    status, err, _ = call(site, "POST", f"{revoke.removesuffix('/revoke')}/renew", {"csr": "x"}, token=OPS)
    assert status == 403 and is_error(err)
    status, record, _ = call(site, "POST", revoke, {"reason": "superseded"}, token=OPS)
    assert status == 200 and record["status"] == "revoked", record
    # The single api.token has every role.
    status, body = issue(site, SINGLE)
    assert status == 201, body
    status, shown, _ = call(site, "GET", f"/api/v1/certificates/{body['serial']}", token=SINGLE)
    assert status == 200
    status, record, _ = call(
        site, "POST", f"/api/v1/certificates/{body['serial']}/revoke", {"reason": "superseded"}, token=SINGLE
    )
    assert status == 200


@pytest.mark.e2e
def test_without_a_valid_token_401(site: Site) -> None:
    for token in (None, "wrong", RA + "x", RA.upper()):
        status, err = issue(site, token) if token else issue(site, "")
        assert status == 401 and is_error(err) and err["error"] == "unauthorized", (token, err)
    # The open routes stay open.
    status, doc, _ = call(site, "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/certificates/{serial}/renew",
        "/api/v1/problem-reports",
        "/api/v1/key-compromise/challenge",
    ):
        assert "post" in doc["paths"][path], path
    assert doc["paths"]["/api/v1/problem-reports"]["post"]["security"] == []
    assert "signature" in str(doc["paths"]["/api/v1/key-compromise"]["post"]["requestBody"])


@pytest.mark.e2e
def test_every_call_is_audited_with_the_token_name_never_the_token(site: Site) -> None:
    before = len(audit(site, "api-call"))
    status, body = issue(site, RA)
    assert status == 201
    serial = str(body["serial"])
    call(site, "GET", f"/api/v1/certificates/{serial}", token=RA)
    call(site, "GET", f"/api/v1/certificates/{serial}", token=OPS)  # 403, still recorded
    call(site, "POST", f"/api/v1/certificates/{serial}/revoke", {"reason": "superseded"}, token=OPS)
    call(site, "GET", f"/api/v1/certificates/{serial}", token="nobody")  # 401: not in the audit log
    calls = [detail for _, detail in audit(site, "api-call")][before:]
    assert len(calls) == 4, calls
    assert [('"ra-frontend"' in c, '"ops"' in c) for c in calls] == [
        (True, False),
        (True, False),
        (False, True),
        (False, True),
    ]
    assert '"status": 403' in calls[2]
    # The use cases' own records name the token too.
    issued = [d for s, d in audit(site, "issue") if s == serial.lower()]
    assert len(issued) == 1 and '"requested_by": "api (token ra-frontend)"' in issued[0]
    revoked = [d for s, d in audit(site, "revoke") if s == serial.lower()]
    assert len(revoked) == 1 and '"requested_by": "api (token ops)"' in revoked[0]
    # No token text anywhere in the audit log or the server's log.
    with sqlite3.connect(site.data / "shirushi.db") as db:
        everything = "\n".join(d for (d,) in db.execute("select detail from audit"))
    for secret in (SINGLE, RA, OPS):
        assert secret not in everything and secret not in site.log()
