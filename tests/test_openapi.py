"""The API's OpenAPI document and the checks made from it, in-process (no server started).

The document must be valid OpenAPI 3.1, list exactly the routes the app serves, and agree with the
code behind each schema (reasons, serials); requests that do not match a schema are refused with
400 before a handler (and so the backend) is reached. tests/test_openapi_e2e.py runs schemathesis
against a real `serve`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from shirushi import config
from shirushi.backend import Backend
from shirushi.errors import PolicyError
from shirushi.reasons import CODES
from shirushi.revocation import check_reason
from shirushi.web import schemas
from shirushi.web.api import create_app
from shirushi.web.operations import Answer, Call, Operation, max_json_bytes

TOKEN = "doc-token"
FRAMED = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # No `init`: a request that reaches a handler meets a missing database (503), so a 400 proves
    # the schema refused it first.
    root = tmp_path_factory.mktemp("openapi")
    settings = config.load(
        None,
        environ={
            "SHIRUSHI_DATA_DIR": str(root / "data"),
            "SHIRUSHI_REDIS__URL": f"unix://{root}/none.sock",
            "SHIRUSHI_API__TOKEN": TOKEN,
            "SHIRUSHI_API__OPEN_REQUESTS_PER_MINUTE": "10000",
        },
    )
    backend = Backend(settings)
    with TestClient(create_app(backend)) as c:
        yield c
    backend.close()


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator picks the 3.1 rules from the version
    for operation in _operations(document):
        for schema in _schemas(operation):
            jsonschema.Draft202012Validator.check_schema(schema)


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for methods in document["paths"].values():
        yield from methods.values()


def _schemas(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for parameter in operation.get("parameters", []):
        yield parameter["schema"]
    body = operation.get("requestBody")
    if body:
        yield body["content"]["application/json"]["schema"]


def test_document_lists_exactly_the_served_routes(client: TestClient, document: dict[str, Any]) -> None:
    app: Any = client.app
    served = {(r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    documented = {(path, m.upper()) for path, methods in document["paths"].items() for m in methods}
    assert served == documented
    assert ("/api/v1/certificates/{serial}/revoke", "POST") in documented


def test_every_error_is_the_shared_object_and_security_is_per_route(document: dict[str, Any]) -> None:
    limited = {"/api/v1/key-compromise/challenge", "/api/v1/problem-reports"}
    public = {"/api/v1/key-compromise", "/api/v1/openapi.json", *limited}
    assert "security" not in document  # declared on each operation
    for path, methods in document["paths"].items():
        for operation in methods.values():
            statuses = set(operation["responses"])
            assert ("429" in statuses) == (path in limited), path
            if path in public:
                assert operation["security"] == [] and not statuses & {"401", "403"}, path
            else:
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], path
                assert operation["security"] == [{"bearer": []}] and {"401", "403"} <= statuses, path
            if "requestBody" in operation:
                assert operation["requestBody"]["required"] is True
                assert {"400", "413"} <= statuses, path
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "detail"]


def test_405_lists_the_documented_methods_in_allow(client: TestClient, document: dict[str, Any]) -> None:
    """RFC 9110 15.5.6: a 405 MUST carry Allow."""
    for path, methods in document["paths"].items():
        url = path.replace("{serial}", "AB")
        allowed = {m.upper() for m in methods} | ({"HEAD"} if "get" in methods else set())
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            response = client.request(method, url, headers=AUTH)
            assert response.status_code == 405, (method, url)
            assert set(response.headers["allow"].split(", ")) == allowed, (method, url)
            assert set(response.json()) == {"error", "detail"}


@pytest.mark.parametrize(
    ("method", "url", "body", "detail"),
    [
        ("POST", "/api/v1/certificates", {"csr": ""}, "field 'csr' is not valid"),
        ("POST", "/api/v1/certificates", {}, "'csr' is a required property"),
        ("POST", "/api/v1/certificates", [1], "request body must be of type object"),
        ("POST", "/api/v1/certificates", {"csr": FRAMED, "days": 0}, "field 'days' must be at least 1"),
        ("POST", "/api/v1/certificates", {"csr": FRAMED, "dns": ["a b"]}, "field 'dns[0]' is not valid"),
        ("POST", "/api/v1/certificates/AB/revoke", {"reason": "certificateHold"}, "must be one of"),
        ("POST", "/api/v1/certificates/AB/revoke", {"reason": "superseded", "at": "now"}, "'at' was unexpected"),
        ("POST", "/api/v1/certificates/0/revoke", {}, "path parameter 'serial'"),
        ("GET", "/api/v1/certificates/" + "1" * 41, None, "path parameter 'serial'"),
        ("POST", "/api/v1/key-compromise", {}, "exactly one of"),
        ("POST", "/api/v1/key-compromise", {"private_key": "x"}, "'private_key' is not valid"),
        ("POST", "/api/v1/key-compromise", {"csr": FRAMED, "private_key": "x"}, "'private_key' is not valid"),
        ("POST", "/api/v1/key-compromise", {"public_key": "x", "challenge": "AAAA"}, "'public_key' is not valid"),
        ("POST", "/api/v1/revocations", {"serials": ["zz"], "reason": "superseded"}, "'serials[0]'"),
        ("POST", "/api/v1/revocations", {"serials": ["AB"], "reason": "certificateHold"}, "must be one of"),
        # A final `$` is the end of the text, as clients read it (ECMA-262), not before a newline.
        ("POST", "/api/v1/revocations", {"serials": ["AB\n"], "reason": "superseded"}, "'serials[0]'"),
        ("GET", "/api/v1/certificates/AB%0A", None, "path parameter 'serial'"),
        ("POST", "/api/v1/certificates/AB/renew", {"csr": FRAMED, "dns": ["a.example"]}, "'dns' was unexpected"),
        ("POST", "/api/v1/certificates/AB/renew", {}, "'csr' is a required property"),
        ("POST", "/api/v1/certificates/0/renew", {"csr": FRAMED}, "path parameter 'serial'"),
        ("POST", "/api/v1/key-compromise/challenge", {"public_key": FRAMED}, "'public_key' is not valid"),
        ("POST", "/api/v1/problem-reports", {"reason": "misuse"}, "request body"),
        ("POST", "/api/v1/problem-reports", {"serial": "AB", "reason": ""}, "'reason' must be at least 1"),
        ("POST", "/api/v1/problem-reports", {"serial": "AB", "reason": "x", "who": "me"}, "'who' was unexpected"),
        ("POST", "/api/v1/problem-reports", {"serial": "AB", "reason": "x" * 1001}, "'reason' must be at most"),
    ],
)
def test_schema_refusals_come_before_the_handler(
    client: TestClient, method: str, url: str, body: object, detail: str
) -> None:
    response = client.request(method, url, json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    err = response.json()
    assert err["error"] == "bad_request" and detail in err["detail"], err


def test_valid_requests_reach_the_handler(client: TestClient) -> None:
    # Valid by the schema, so the handler runs: it finds no database (503 "state").
    for method, url, body in [
        ("GET", "/api/v1/certificates/00AB", None),
        ("POST", "/api/v1/certificates/AB/revoke", {}),
        ("POST", "/api/v1/revocations", {"serials": ["0"], "reason": "privilegeWithdrawn"}),
        ("POST", "/api/v1/certificates/AB/renew", {"csr": FRAMED, "days": 30}),
        ("POST", "/api/v1/problem-reports", {"serial": "AB", "reason": "misuse", "contact": "", "detail": "\n"}),
    ]:
        response = client.request(method, url, json=body, headers=AUTH)
        assert response.status_code == 503 and response.json()["error"] == "state", (url, response.text)


def test_token_is_checked_before_the_body(client: TestClient) -> None:
    response = client.post("/api/v1/certificates", json={"csr": ""})
    assert response.status_code == 401 and response.headers["www-authenticate"] == 'Bearer realm="shirushi"'
    response = client.post("/api/v1/certificates", json={"csr": ""}, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


def test_bodies_over_their_bound_are_413_and_not_json_is_400(client: TestClient) -> None:
    response = client.post("/api/v1/key-compromise", content=b" " * 2_000_000)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    for text in (b"{", b"NaN", b'{"private_key": Infinity}', b"[" * 100_000):
        response = client.post("/api/v1/key-compromise", content=text)
        assert response.status_code == 400 and "not JSON" in response.json()["detail"], text


def test_the_reason_enums_are_what_check_reason_accepts(document: dict[str, Any]) -> None:
    paths = document["paths"]
    single = paths["/api/v1/certificates/{serial}/revoke"]["post"]["requestBody"]["content"]["application/json"]
    bulk = paths["/api/v1/revocations"]["post"]["requestBody"]["content"]["application/json"]
    for enum, by_subscriber in (
        (single["schema"]["properties"]["reason"]["enum"], True),
        (bulk["schema"]["properties"]["reason"]["enum"], False),
    ):
        accepted = []
        for name in CODES:
            with contextlib.suppress(PolicyError):
                accepted.append(check_reason(name, by_subscriber=by_subscriber))
        assert sorted(enum) == sorted(accepted)


SERIAL = jsonschema.Draft202012Validator(schemas.SERIAL)


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=44))
def test_the_serial_schema_is_rfc_5280(text: str) -> None:
    """RFC 5280 4.1.2.2: positive, at most 20 octets; padding to whole octets (21) allowed."""
    value = int(text, 16)
    assert SERIAL.is_valid(text) == (0 < value < 1 << 160 and len(text) <= 42)


def test_every_body_has_a_byte_bound() -> None:
    assert max_json_bytes({"type": "string"}) is None
    assert max_json_bytes({"type": "object", "properties": {}}) is None  # extra properties unbounded
    assert max_json_bytes({"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"}) == 8
    assert max_json_bytes({"type": "string", "maxLength": 3, "pattern": "^a.c$"}) == 38
    assert max_json_bytes({"type": "string", "maxLength": 3, "pattern": "[a-z]"}) == 38  # unanchored
    with pytest.raises(ValueError, match="bound every size"):
        Operation("POST", "/x", _nothing, "x", role=None, body={"type": "object"}, responses={200: Answer("ok")})
    with pytest.raises(ValueError, match="path parameters"):
        Operation("GET", "/x/{id}", _nothing, "x", role=None, responses={200: Answer("ok")})


async def _nothing(call: Call) -> Any:
    raise AssertionError


def test_largest_valid_body_fits_its_bound(client: TestClient) -> None:
    """The body bound follows from the schema: the largest valid report is not refused as too large."""
    base64 = ("A" * 64 + "\n") * ((schemas.PRIVATE_KEY["maxLength"] - 80) // 65)
    key = f"-----BEGIN PRIVATE KEY-----\n{base64}-----END PRIVATE KEY-----\n"
    assert len(key) <= schemas.PRIVATE_KEY["maxLength"]
    text = json.dumps({"private_key": key}, indent=8).encode()
    response = client.post("/api/v1/key-compromise", content=text)
    # Neither 413 nor 400: the handler ran, and found no key in the base64 (422).
    assert response.status_code == 422 and response.json()["error"] == "invalid", response.text


def test_content_refusals_are_422(client: TestClient) -> None:
    """Of the documented form, refused for what it holds: 422, never 400 (schemathesis ST202).
    (Issuance opens the database first; its 422 is in tests/test_serve.py.)"""
    framed_key = FRAMED.replace("CERTIFICATE REQUEST", "PUBLIC KEY")
    for url, body in [
        ("/api/v1/key-compromise/challenge", {"public_key": framed_key}),
        ("/api/v1/key-compromise", {"csr": FRAMED}),
        ("/api/v1/key-compromise", {"public_key": framed_key, "challenge": "AAAA", "signature": "AAAA"}),
    ]:
        response = client.post(url, json=body, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"] == "invalid", (url, response.text)


def test_with_the_api_disabled_protected_routes_answer_403(tmp_path: Path, document: dict[str, Any]) -> None:
    settings = config.load(None, environ={"SHIRUSHI_DATA_DIR": str(tmp_path / "data")})  # no token at all
    backend = Backend(settings)
    with TestClient(create_app(backend)) as disabled:
        for path, methods in document["paths"].items():
            for method, operation in methods.items():
                url = path.replace("{serial}", "AB")
                for headers in ({}, AUTH):
                    response = disabled.request(method, url, json={}, headers=headers)
                    if operation["security"]:
                        assert response.status_code == 403 and response.json()["error"] == "api_disabled", url
                    else:
                        assert response.status_code not in (401, 403), (method, path)
    backend.close()
