"""schemathesis against a running `serve`: the API does what its OpenAPI document says.

`st run .../api/v1/openapi.json --checks all` with the repository's schemathesis.toml: with the
all-roles token, no failure of any check (status codes and headers documented, response schemas,
schema-valid requests accepted, invalid ones refused, 405 with Allow, auth enforced). Without a
token the protected routes answer only the documented 401, and with a read-only token only the
documented 403 where the role is missing. Real 2xx answers of every route are validated against
the document's response schemas (schemathesis' CSRs and keys never verify, so it rarely sees
them). The examples per operation are bounded so a run takes a minute or two.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.dns_server import Zone, dns_server
from support.pki import make_csr, make_key
from support.serving import Site

pytestmark = pytest.mark.e2e

REPO = Path(__file__).parents[1]
TOKEN = "schemathesis-token-all-roles"
READER = "schemathesis-token-read-only"
CONFIG = f"""
[api]
token = "{TOKEN}"
open_requests_per_minute = 10000

[[api.tokens]]
name = "reader"
token = "{READER}"
roles = ["read"]
"""
EXAMPLES = "25"  # per operation and phase
# Without working credentials every protected answer is the same: fewer cases, no stateful phase.
NO_ACCESS = ("--phases", "coverage,fuzzing")


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[Zone, str]]:
    """An authoritative server the domain validation route resolves through."""
    with dns_server() as served:
        yield served


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, dns: tuple[Zone, str]) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("openapi")
    (root / "shirushi.toml").write_text(CONFIG)
    s = Site(root, SHIRUSHI_CONFIG=str(root / "shirushi.toml"), SHIRUSHI_VALIDATION__RESOLVER=dns[1])
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


@pytest.fixture(scope="module")
def document(site: Site) -> dict[str, Any]:
    status, doc = call(site, "GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and isinstance(doc, dict)
    return doc


Seen = list[tuple[str, str, int, str]]


def schemathesis(site: Site, tmp_path: Path, *args: str, examples: str = EXAMPLES) -> Seen:
    """Run `st run --checks all`; fail with its report unless it found nothing. Returns every
    (method, path, status, Authorization header) it saw, from its HAR report."""
    har = tmp_path / "run.har"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(REPO / "schemathesis.toml"),
            "run",
            f"{site.api_url}/api/v1/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            examples,
            # One worker: with two, schemathesis parses its lambdas' source (ast.parse) in two
            # threads at once, which CPython 3.11 does not survive ("AST constructor recursion
            # depth mismatch", a SystemError reported as a runtime error of the run).
            "--workers",
            "1",
            # Hypothesis times data generation; on a loaded machine the 10,000-serial bulk body is
            # "too slow" to generate, which says nothing about the API.
            "--suppress-health-check",
            "too_slow",
            "--report",
            "har",
            "--report-har-path",
            str(har),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache directory goes there, not into the repository
    )
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    return [
        (e["request"]["method"], urlsplit(e["request"]["url"]).path, e["response"]["status"], authorization(e))
        for e in entries
    ]


def authorization(entry: dict[str, Any]) -> str:
    headers = {h["name"].lower(): h["value"] for h in entry["request"]["headers"]}
    return str(headers.get("authorization", ""))


def roles(document: dict[str, Any]) -> dict[tuple[str, str], str | None]:
    """(METHOD, path template) -> the role it needs, None when open."""
    return {
        (method.upper(), path): operation.get("x-role")
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def template(path: str, document: dict[str, Any]) -> str | None:
    """The document's path template a concrete path falls under."""
    for name in document["paths"]:
        if re.fullmatch(re.escape(name).replace(re.escape("{serial}"), "[^/]+"), path):
            return str(name)
    return None


def test_every_check_passes_with_the_token(site: Site, tmp_path: Path) -> None:
    seen = schemathesis(site, tmp_path, "--header", f"Authorization: Bearer {TOKEN}")
    statuses = {status for _, _, status, _ in seen}
    # It got past the token and the schema (400) into the handlers (404 unknown serial, 422
    # refused content, 200 bulk answers), and never a 5xx.
    assert {200, 400, 404, 422} <= statuses, sorted(statuses)
    assert not [s for s in statuses if s >= 500]


def test_without_a_token_only_401(site: Site, document: dict[str, Any], tmp_path: Path) -> None:
    seen = schemathesis(site, tmp_path, *NO_ACCESS, examples="10")
    needs = roles(document)
    answers = {
        status
        for method, path, status, _ in seen
        if (key := (method, template(path, document) or "")) in needs and needs[key] is not None
    }
    assert answers == {401}, sorted(answers)


def test_a_read_only_token_gets_403_where_it_lacks_the_role(
    site: Site, document: dict[str, Any], tmp_path: Path
) -> None:
    # Unsanitised report (a test token), so the calls made with it can be told from the others.
    reader = ("--header", f"Authorization: Bearer {READER}", "--output-sanitize", "false")
    seen = schemathesis(site, tmp_path, *NO_ACCESS, *reader, examples="10")
    needs = roles(document)
    refused: set[int] = set()
    read: set[int] = set()
    for method, path, status, given in seen:
        if given != f"Bearer {READER}":
            continue  # schemathesis' own checks also send none or a wrong one: 401, checked above
        role = needs.get((method, template(path, document) or ""))
        if role == "read":
            read.add(status)
        elif role is not None:
            refused.add(status)
    assert refused == {403}, sorted(refused)
    assert 404 in read and not read & {401, 403}, sorted(read)


def call(site: Site, method: str, path: str, body: object = None, token: str | None = TOKEN) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(site.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_success_answers_match_their_documented_schemas(
    site: Site, document: dict[str, Any], dns: tuple[Zone, str]
) -> None:
    """Every route's 2xx, from real requests, against its documented response schema."""
    checked: set[tuple[str, str]] = set()

    def check(method: str, name: str, path: str, body: object, expected: int, token: str | None = TOKEN) -> Any:
        status, answer = call(site, method, path, body, token)
        assert status == expected, answer
        schema = document["paths"][name][method.lower()]["responses"][str(status)]["content"]["application/json"]
        jsonschema.Draft202012Validator(schema["schema"]).validate(answer)
        checked.add((method, name))
        return answer

    key = make_key()
    certs = "/api/v1/certificates"
    issued = check("POST", certs, certs, {"csr": make_csr(key=key).decode()}, 201)
    other = check("POST", certs, certs, {"csr": make_csr().decode(), "days": 30}, 201)
    one = certs + "/{serial}"
    check("GET", one, f"{certs}/{issued['serial']}", None, 200)
    renewed = check("POST", one + "/renew", f"{certs}/{other['serial']}/renew", {"csr": make_csr().decode()}, 201)
    check("POST", one + "/revoke", f"{certs}/{other['serial']}/revoke", {}, 200)
    check("GET", one, f"{certs}/{other['serial']}", None, 200)  # with its revocation
    bulk = {"serials": [issued["serial"], other["serial"], "ABCDEF", "0"], "reason": "superseded"}
    answer = check("POST", "/api/v1/revocations", "/api/v1/revocations", bulk, 200)
    assert answer["revoked"] == [issued["serial"]] and answer["invalid"] == ["0"]
    report = {"serial": renewed["serial"], "reason": "misuse", "contact": "a@example.jp"}
    check("POST", "/api/v1/problem-reports", "/api/v1/problem-reports", report, 201, None)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    answer = check("POST", "/api/v1/key-compromise", "/api/v1/key-compromise", {"private_key": private}, 200, None)
    assert answer["revoked"] == [issued["serial"]]  # moved to keyCompromise (BR 7.2.2)
    # Proof by challenge, for a key this CA never certified: nothing revoked, the key blocked.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    challenge_path = "/api/v1/key-compromise/challenge"
    given = check("POST", challenge_path, challenge_path, {"public_key": public.decode()}, 200, None)
    signature = ec_key.sign(base64.b64decode(given["challenge"]), ec.ECDSA(hashes.SHA256()))
    proof = {
        "public_key": public.decode(),
        "challenge": given["challenge"],
        "signature": base64.b64encode(signature).decode(),
    }
    assert check("POST", "/api/v1/key-compromise", "/api/v1/key-compromise", proof, 200, None) == {"revoked": []}
    check("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", None, 200, None)
    # Domain validation (BR 3.2.2.4.7) through the API door, the TXT record in the test's DNS server.
    name = "openapi.example.jp"
    started = check("POST", "/api/v1/validations", "/api/v1/validations", {"name": name, "method": "dns"}, 201)
    dns[0].txt(f"_acme-challenge.{name}", started["value"])
    check_path = f"/api/v1/validations/{started['id']}/check"
    check("POST", "/api/v1/validations/{id}/check", check_path, None, 200)
    assert checked == set(roles(document)), "a route without a checked success answer"
