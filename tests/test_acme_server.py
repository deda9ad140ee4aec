"""The ACME server over HTTP against a running `serve` (RFC 8555, RFC 9773), with the test DNS
server and a real HTTP server as the validation target: failed http-01 validations (wrong
answer, a redirect to a private address, an oversized answer, a slow server) and an expired
authorization each end with the RFC's problem type and no certificate; External Account Binding
(required, bad) and the profile it leads to (OV from the bound organisation, DV otherwise, or a
refusal); key rollover and deactivation; ARI's window after a revocation; rate limits (429,
rateLimited, Retry-After); JWS errors; and the API and CLI doors running the same domain gate.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.acme import ari
from shirushi.acme.jws import b64encode, jwk_of
from support.acme_client import Answer, Client, eab, new_key, sign_es256
from support.dns_server import Zone, dns_server
from support.http_site import Site as HTTPSite
from support.http_site import http_site
from support.pki import make_csr
from support.serving import Site, free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.loopback, pytest.mark.oracle]

ORG = "C=JP, ST=Tokyo, L=Chiyoda-ku, O=Example Org KK"
ORG_KEY = b"org-binding-key-0123456789abcdef"
PLAIN_KEY = b"plain-binding-key-0123456789abcd"
TOKEN = "acme-test-api-token-0123456789"
DV_OID = "2.23.140.1.2.1"
OV_OID = "2.23.140.1.2.2"


class Server:
    def __init__(self, site: Site, zone: Zone, target: HTTPSite, directory: str) -> None:
        self.site = site
        self.zone = zone
        self.target = target
        self.directory = directory

    def client(self, binding: str | None = "plain") -> Client:
        """A registered account, bound to `binding` ("org", "plain") or to nothing."""
        c = Client(self.directory)
        payload: dict[str, Any] = {}
        if binding is not None:
            key = ORG_KEY if binding == "org" else PLAIN_KEY
            payload["externalAccountBinding"] = eab(binding, key, c.jwk, c.directory["newAccount"])
        made = c.register(**payload)
        assert made.status == 201, made.body
        return c

    def certificates_naming(self, name: str) -> int:
        with sqlite3.connect(self.site.data / "shirushi.db") as db:
            rows = db.execute("select dns_names from certificates").fetchall()
        return sum(1 for (names,) in rows if name in (names or "").split())


def start(root: Path, zone_address: str, target: HTTPSite, issuing: str = "any", **acme: Any) -> Site:
    acme_port = free_port()
    config = root / "shirushi.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[acme]"] + [f"{k} = {json.dumps(v)}" for k, v in acme.items()]
    config.write_text("\n".join(lines) + "\n")
    site = Site(
        root / "site",
        SHIRUSHI_CONFIG=str(config),
        SHIRUSHI_ACME__LISTEN=f"127.0.0.1:{acme_port}",
        SHIRUSHI_ACME__URL=f"http://127.0.0.1:{acme_port}/",
        SHIRUSHI_VALIDATION__RESOLVER=zone_address,
        SHIRUSHI_VALIDATION__HTTP_PORT=str(target.port),
        SHIRUSHI_VALIDATION__ALLOW_LOOPBACK="true",
        SHIRUSHI_VALIDATION__ENFORCE="acme,api,cli",
        SHIRUSHI_API__TOKEN=TOKEN,
        SHIRUSHI_CA__ISSUING_CA_POLICY=issuing,
        SHIRUSHI_TEST_EAB_ORG=base64.urlsafe_b64encode(ORG_KEY).decode().rstrip("="),
        SHIRUSHI_TEST_EAB_PLAIN=base64.urlsafe_b64encode(PLAIN_KEY).decode().rstrip("="),
    )
    site.acme_port = acme_port  # type: ignore[attr-defined]
    init = site.cli("init")
    assert init.returncode == 0, init.stderr
    return site


EAB: dict[str, Any] = {
    "eab_keys": ["org=SHIRUSHI_TEST_EAB_ORG", "plain=SHIRUSHI_TEST_EAB_PLAIN"],
    "eab_organisations": [f"org|{ORG}"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("acme-server")
    with dns_server() as (zone, address), http_site() as target:
        zone.caa("example.jp", (0, "issue", "shirushi.example"))
        site = start(
            root,
            address,
            target,
            eab_required=True,
            orders_per_account_per_hour=3,
            certificates_per_name_per_week=2,
            **EAB,
        )
        with site.serving():
            port = site.acme_port  # type: ignore[attr-defined]
            wait_port(port, site.proc)
            yield Server(site, zone, target, f"http://127.0.0.1:{port}/directory")


def serve_http01(server: Server, client: Client, challenge: dict[str, Any]) -> None:
    path = "/.well-known/acme-challenge/" + challenge["token"]
    server.target.routes[path] = (200, {}, client.key_authorization(challenge["token"]).encode())


def validate(server: Server, client: Client, name: str) -> Answer:
    """An order for `name` whose http-01 challenge the target answers; returns the order."""
    server.zone.a(name)
    order = client.order(name)
    assert order.status == 201, order.body
    for authz in client.authorizations(order):
        if authz["status"] == "valid":
            continue
        challenge = client.challenge(authz, "http-01")
        serve_http01(server, client, challenge)
        answered = client.answer(challenge)
        assert answered.json["status"] == "valid", answered.body
    return order


def finalize(client: Client, order: Answer, *names: str) -> Answer:
    csr = x509.load_pem_x509_csr(make_csr(list(names)))
    der = csr.public_bytes(serialization.Encoding.DER)
    return client.post(order.json["finalize"], {"csr": b64encode(der)})


def issue(server: Server, client: Client, name: str) -> tuple[x509.Certificate, bytes]:
    order = validate(server, client, name)
    done = finalize(client, order, name)
    assert done.status == 200 and done.json["status"] == "valid", done.body
    chain = client.post(done.json["certificate"])
    assert chain.headers["content-type"].startswith("application/pem-certificate-chain")
    return x509.load_pem_x509_certificates(chain.body)[0], chain.body


def policies(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    return [p.policy_identifier.dotted_string for p in ext]


def openssl_verify_policy(site: Site, chain_pem: bytes, policy: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """RFC 5280 6.1 policy processing with `policy` required explicitly (openssl -policy_check)."""
    certs = x509.load_pem_x509_certificates(chain_pem)
    leaf, untrusted = tmp / "leaf.pem", tmp / "untrusted.pem"
    leaf.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:]))
    root = site.data / "certs" / "root.pem"
    args = ["-policy_check", "-explicit_policy", "-policy", policy, "-CAfile", str(root), "-untrusted", str(untrusted)]
    return subprocess.run(
        ["openssl", "verify", *args, str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


def pkilint(cert: x509.Certificate, kind: str, tmp: Path) -> None:
    path = tmp / f"{kind}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tool = Path(sys.executable).parent / "lint_cabf_serverauth_cert"
    command = [str(tool), "lint", "-d", "-t", kind, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line or "FATAL" in line]
    # Loopback URLs of the test site are the only findings tolerated (ca.lint_allow_local_urls).
    assert all("internal_ip_address" in e or "internal_domain_name" in e for e in errors), result.stdout


# -- External Account Binding -------------------------------------------------------------


def test_eab_required_and_bad_bindings(server: Server) -> None:
    c = Client(server.directory)
    assert c.directory["meta"]["externalAccountRequired"] is True
    url = c.directory["newAccount"]
    missing = c.register()
    assert (missing.status, missing.type) == (403, "externalAccountRequired")
    unknown = c.register(externalAccountBinding=eab("nobody", PLAIN_KEY, c.jwk, url))
    assert (unknown.status, unknown.type) == (403, "unauthorized")
    bad_mac = c.register(externalAccountBinding=eab("plain", b"not-the-key", c.jwk, url))
    assert (bad_mac.status, bad_mac.type) == (403, "unauthorized") and "MAC" in bad_mac.json["detail"]
    other_key = c.register(externalAccountBinding=eab("plain", PLAIN_KEY, new_key_jwk(), url))
    assert other_key.type == "malformed" and "bind" in other_key.json["detail"]
    wrong_url = c.register(externalAccountBinding=eab("plain", PLAIN_KEY, c.jwk, url + "x"))
    assert wrong_url.type == "malformed"
    assert c.kid is None  # none of these made an account
    good = c.register(externalAccountBinding=eab("plain", PLAIN_KEY, c.jwk, url))
    assert good.status == 201 and good.json["status"] == "valid"


def new_key_jwk() -> dict[str, str]:
    return jwk_of(new_key().public_key())


def test_bound_organisation_gets_ov_and_others_dv(server: Server, tmp_path: Path) -> None:
    ov, ov_chain = issue(server, server.client("org"), "org.example.jp")
    assert ov.subject.rfc4514_string() == "CN=org.example.jp,O=Example Org KK,L=Chiyoda-ku,ST=Tokyo,C=JP"
    assert policies(ov)[0] == OV_OID
    pkilint(ov, "OV-FINAL-CERTIFICATE", tmp_path)
    verified = openssl_verify_policy(server.site, ov_chain, OV_OID, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    dv, dv_chain = issue(server, server.client("plain"), "plain.example.jp")
    assert dv.subject.rfc4514_string() == "CN=plain.example.jp"
    assert policies(dv)[0] == DV_OID
    pkilint(dv, "DV-FINAL-CERTIFICATE", tmp_path)
    # The issuing CA (ca.issuing_ca_policy = "any") lists anyPolicy, so both the OV and the DV
    # certificate keep their reserved policy through path validation (RFC 5280 6.1).
    verified = openssl_verify_policy(server.site, dv_chain, DV_OID, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    issuing = x509.load_pem_x509_certificates(dv_chain)[1]
    assert policies(issuing) == ["2.5.29.32.0"]
    # ...and a policy it does not list is refused by the same check: the check can fail.
    assert openssl_verify_policy(server.site, dv_chain, "2.23.140.1.2.3", tmp_path).returncode != 0


def test_ov_only_server_refuses_unbound_accounts(tmp_path: Path) -> None:
    with dns_server() as (zone, address), http_site() as target:
        # OV only: an issuing CA restricted to the OV policy is enough (BR 7.1.2.10.5).
        site = start(tmp_path, address, target, issuing="ov", profile="ov", **EAB)
        with site.serving():
            port = site.acme_port  # type: ignore[attr-defined]
            wait_port(port, site.proc)
            srv = Server(site, zone, target, f"http://127.0.0.1:{port}/directory")
            for binding in (None, "plain"):
                client = srv.client(binding)
                order = validate(srv, client, "unbound.example.jp")
                refused = finalize(client, order, "unbound.example.jp")
                assert (refused.status, refused.type) == (403, "unauthorized"), refused.body
                assert "external account binding" in refused.json["detail"]
            assert srv.certificates_naming("unbound.example.jp") == 0
            cert, _chain = issue(srv, srv.client("org"), "bound.example.jp")
            assert "O=Example Org KK" in cert.subject.rfc4514_string() and policies(cert)[0] == OV_OID


# -- failed validations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("wrong-token", "incorrectResponse"),
        ("missing", "unauthorized"),
        ("private-redirect", "connection"),
        ("oversized", "incorrectResponse"),
        ("slow", "connection"),
    ],
)
def test_failed_http01_validation(server: Server, case: str, problem: str) -> None:
    name = f"{case}.example.jp"
    server.zone.a(name)
    server.zone.a("inside.example.jp", "10.20.30.40")
    client = server.client()
    order = client.order(name)
    (authz,) = client.authorizations(order)
    challenge = client.challenge(authz, "http-01")
    path = "/.well-known/acme-challenge/" + challenge["token"]
    if case == "wrong-token":
        server.target.routes[path] = (200, {}, client.key_authorization("another-token").encode())
    elif case == "private-redirect":
        # Loopback is allowed for the test's own targets; a private address never is (BR 3.2.2.4).
        target = f"http://inside.example.jp:{server.target.port}{path}"
        server.target.routes[path] = (302, {"Location": target}, b"")
    elif case == "oversized":
        server.target.routes[path] = (200, {}, client.key_authorization(challenge["token"]).encode() + b" " * 20_000)
    elif case == "slow":
        server.target.routes[path] = (200, {}, client.key_authorization(challenge["token"]).encode())
        server.target.slow[path] = 15.0  # past the fetch's 10 s
    answered = client.answer(challenge)
    assert answered.status == 200, answered.body
    assert answered.json["status"] == "invalid", answered.body
    assert answered.json["error"]["type"] == f"urn:ietf:params:acme:error:{problem}", answered.json
    assert client.post(authz["url"]).json["status"] == "invalid"
    # Single use: answering again changes nothing and fetches nothing new.
    assert client.answer(challenge).json["status"] == "invalid"
    state = client.post(order.headers["location"]).json
    assert state["status"] == "invalid" and "certificate" not in state
    refused = finalize(client, order, name)
    assert (refused.status, refused.type) == (403, "orderNotReady")
    assert server.certificates_naming(name) == 0


def test_expired_authorization(server: Server) -> None:
    name = "expired.example.jp"
    server.zone.a(name)
    client = server.client()
    order = client.order(name)
    (authz,) = client.authorizations(order)
    challenge = client.challenge(authz, "http-01")
    serve_http01(server, client, challenge)
    # Let its lifetime pass: the server's own record says it expired a minute ago.
    authz_id = authz["url"].rsplit("/", 1)[1]
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with sqlite3.connect(server.site.data / "shirushi.db") as db:
        (text,) = db.execute("select data from acme_objects where kind = 'authz' and id = ?", (authz_id,)).fetchone()
        data = json.loads(text)
        db.execute(
            "update acme_objects set data = ? where kind = 'authz' and id = ?",
            (json.dumps({**data, "expires": past}, sort_keys=True), authz_id),
        )
    assert client.post(authz["url"]).json["status"] == "expired"
    late = client.answer(challenge)
    assert (late.status, late.type) == (403, "unauthorized") and "expired" in late.json["detail"]
    assert client.post(order.headers["location"]).json["status"] == "invalid"
    assert finalize(client, order, name).type == "orderNotReady"
    assert server.certificates_naming(name) == 0


# -- accounts ---------------------------------------------------------------------------


def test_key_rollover_and_deactivation(server: Server) -> None:
    client = server.client()
    old_key, kid = client.key, client.kid
    assert kid is not None
    fresh = new_key()
    url = client.directory["keyChange"]

    def inner(key: Any, body: dict[str, Any], header_url: str = url) -> dict[str, str]:
        header = {"alg": "ES256", "jwk": jwk_of(key.public_key()), "url": header_url}
        return sign_es256(key, header, json.dumps(body).encode())

    change = {"account": kid, "oldKey": client.jwk}
    wrong_url = client.post(url, inner(fresh, change, header_url=url + "x"))
    assert wrong_url.type == "malformed"
    taken = server.client()  # another account's key cannot be taken over
    clash = client.post(url, inner(taken.key, {"account": kid, "oldKey": client.jwk}))
    assert (clash.status, clash.type) == (409, "conflict")
    done = client.post(url, inner(fresh, change))
    assert done.status == 200, done.body
    # The old key signs nothing any more; the new one speaks for the same account.
    stale = client.post(client.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "x.example.jp"}]})
    assert stale.status == 400 and stale.type == "malformed"
    lookup = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, jwk=True)
    assert lookup.type == "accountDoesNotExist"
    client.key = fresh
    again = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, jwk=True)
    assert again.status == 200 and again.headers["location"] == kid
    assert client.post(kid, {"contact": ["mailto:ops@example.jp"]}).json["contact"] == ["mailto:ops@example.jp"]
    # Deactivation (RFC 8555 7.3.6) is final: nothing signed by the account is accepted after it.
    off = client.post(kid, {"status": "deactivated"})
    assert off.status == 200 and off.json["status"] == "deactivated"
    refused = client.order("after.example.jp")
    assert (refused.status, refused.type) == (403, "unauthorized")
    assert client.post(kid, {"status": "valid"}).type == "unauthorized"
    assert old_key is not fresh


# -- ARI --------------------------------------------------------------------------------


def test_renewal_info_window_moves_forward_on_revocation(server: Server) -> None:
    client = server.client()
    cert, _chain = issue(server, client, "ari.example.jp")
    base = client.directory["renewalInfo"]
    cert_id = ari.cert_id(cert)
    before = client.get(base + cert_id)
    assert before.status == 200 and int(before.headers["retry-after"]) > 0
    window = before.json["suggestedWindow"]
    start = dt.datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(window["end"].replace("Z", "+00:00"))
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc < start < end < cert.not_valid_after_utc and start > now
    # A client that adds its own "/" to the directory's URL gets the same answer.
    assert client.get(base + "/" + cert_id).json == before.json
    der = cert.public_bytes(serialization.Encoding.DER)
    revoked = client.post(client.directory["revokeCert"], {"certificate": b64encode(der), "reason": 4})
    assert revoked.status == 200, revoked.body
    after = client.get(base + cert_id).json["suggestedWindow"]
    moved = dt.datetime.fromisoformat(after["start"].replace("Z", "+00:00"))
    assert moved < start and moved <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert client.get(base + "AAAA.AAAA").status == 404
    assert client.post(client.directory["revokeCert"], {"certificate": b64encode(der)}).type == "alreadyRevoked"


# -- rate limits ------------------------------------------------------------------------


def test_rate_limit_per_account(server: Server) -> None:
    client = server.client()
    for i in range(3):
        assert client.order(f"r{i}.example.jp").status == 201
    limited = client.order("r3.example.jp")
    assert (limited.status, limited.type) == (429, "rateLimited"), limited.body
    assert 0 < int(limited.headers["retry-after"]) <= 3601
    # Another account is not held back by this one's orders.
    assert server.client().order("r3.example.jp").status == 201


def test_rate_limit_per_name(server: Server) -> None:
    name = "busy.example.jp"
    for _ in range(2):
        issue(server, server.client(), name)
    limited = server.client().order(name)
    assert (limited.status, limited.type) == (429, "rateLimited"), limited.body
    assert 0 < int(limited.headers["retry-after"]) <= 7 * 24 * 3600 + 1
    assert limited.json["subproblems"][0]["identifier"] == {"type": "dns", "value": name}
    assert server.certificates_naming(name) == 2


# -- JWS errors -------------------------------------------------------------------------


def test_jws_errors_over_http(server: Server) -> None:
    client = server.client()
    order_url = client.directory["newOrder"]
    body = {"identifiers": [{"type": "dns", "value": "jws.example.jp"}]}
    nonce = client.nonce()
    assert client.post(order_url, body, nonce=nonce).status == 201
    replayed = client.post(order_url, body, nonce=nonce)
    assert (replayed.status, replayed.type) == (400, "badNonce") and "replay-nonce" in replayed.headers
    assert client.post(order_url, body, nonce="made-up").type == "badNonce"
    assert client.post(order_url, body, header_url=order_url + "/elsewhere").type == "unauthorized"
    forged = client.post(order_url, body, key=new_key())
    assert (forged.status, forged.type) == (400, "malformed")
    ghost = client.post(order_url, body, kid=client.kid.rsplit("/", 1)[0] + "/nobody")  # type: ignore[union-attr]
    assert (ghost.status, ghost.type) == (400, "accountDoesNotExist")
    need_kid = client.post(order_url, body, jwk=True)
    assert need_kid.type == "malformed"
    raw = urllib.request.Request(order_url, data=b"{", method="POST", headers={"Content-Type": "application/jose+json"})
    with pytest.raises(urllib.error.HTTPError) as junk:
        urllib.request.urlopen(raw, timeout=30)
    assert junk.value.code == 400 and json.loads(junk.value.read())["type"].endswith(":malformed")
    assert "Traceback" not in server.site.log()


# -- the other doors --------------------------------------------------------------------


def api_issue(server: Server, csr: bytes) -> tuple[int, dict[str, Any]]:
    return api_post(server, "/api/v1/certificates", {"csr": csr.decode()})


def api_post(server: Server, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.site.api_url + path,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_and_cli_doors_run_the_same_gate(server: Server, tmp_path: Path) -> None:
    name, never = "door.example.jp", "never.example.jp"
    server.zone.a(never)
    validate(server, server.client(), name)  # validated through ACME, not finalized
    status, body = api_issue(server, make_csr([name]))
    assert status == 201, body
    issued = body["certificate"]
    assert x509.load_pem_x509_certificate(issued.encode()).subject.get_attributes_for_oid(
        x509.NameOID.ORGANIZATION_NAME
    )  # the RA doors keep issuing OV
    status, body = api_issue(server, make_csr([never]))
    assert status == 403 and body["error"] == "validation" and "domain validation" in body["detail"], body
    csr = tmp_path / "never.csr"
    csr.write_bytes(make_csr([never]))
    cli = server.site.cli("issue", "--csr", str(csr))
    assert cli.returncode == 3 and "domain validation" in cli.stderr, cli.stderr
    # CAA is looked up at issuance, also for a name validated earlier, on every door.
    server.zone.caa(name, (0, "issue", "another-ca.example"))
    try:
        status, body = api_issue(server, make_csr([name]))
        assert status == 403 and "CAA" in body["detail"], body
        csr.write_bytes(make_csr([name]))
        cli = server.site.cli("issue", "--csr", str(csr))
        assert cli.returncode == 3 and "CAA" in cli.stderr, cli.stderr
    finally:
        server.zone.caa(name)
    assert server.certificates_naming(never) == 0


def test_wildcards_are_refused_on_every_door(server: Server, tmp_path: Path) -> None:
    client = server.client()
    refused = client.order("*.example.jp")
    assert refused.type == "rejectedIdentifier", refused.body
    assert refused.json["subproblems"][0]["identifier"] == {"type": "dns", "value": "*.example.jp"}
    status, body = api_issue(server, make_csr(["*.example.jp"]))
    assert (status, body["error"]) == (422, "policy") and "wildcard" in body["detail"], body
    csr = tmp_path / "wild.csr"
    csr.write_bytes(make_csr(["*.example.jp"]))
    cli = server.site.cli("issue", "--csr", str(csr))
    assert cli.returncode == 3 and "wildcard" in cli.stderr, cli.stderr
    assert server.certificates_naming("*.example.jp") == 0


def test_validation_outside_acme_for_the_ra_doors(server: Server, tmp_path: Path) -> None:
    """`shirushi validate`: BR 3.2.2.4.18 and 3.2.2.4.7 for names the CLI and API then issue for."""
    site, zone = server.site, server.zone
    web, txt = "web.example.jp", "txt.example.jp"
    zone.a(web)

    def started(name: str, method: str) -> dict[str, str]:
        out = site.cli("validate", name, "--method", method)
        assert out.returncode == 0, out.stderr
        return dict(line.split(" ", 1) for line in out.stdout.splitlines()[:2])

    csr = tmp_path / "req.csr"
    csr.write_bytes(make_csr([web]))
    assert site.cli("issue", "--csr", str(csr)).returncode == 3  # not validated yet
    request = started(web, "website")
    path = f"/.well-known/pki-validation/{request['id']}.txt"
    server.target.routes[path] = (200, {}, b"some other value\n")
    wrong = site.cli("validate", "--check", request["id"])
    assert wrong.returncode == 3 and "3.2.2.4.18" in wrong.stderr, wrong.stderr
    server.target.routes[path] = (200, {}, f"{request['value']}\n".encode())
    again = site.cli("validate", "--check", request["id"])  # single use: the failed check used it up
    assert again.returncode == 3 and "single use" in again.stderr, again.stderr
    assert site.cli("issue", "--csr", str(csr)).returncode == 3
    request = started(web, "website")
    server.target.routes[f"/.well-known/pki-validation/{request['id']}.txt"] = (200, {}, request["value"].encode())
    ok = site.cli("validate", "--check", request["id"])
    assert ok.returncode == 0 and "BR 3.2.2.4.18" in ok.stdout, ok.stderr
    issued = site.cli("issue", "--csr", str(csr))
    assert issued.returncode == 0, issued.stderr

    wild = site.cli("validate", f"*.{txt}", "--method", "website")
    assert wild.returncode == 3 and "wildcard" in wild.stderr  # BR 3.2.2.4: DNS methods only
    request = started(txt, "dns")
    zone.txt(f"_acme-challenge.{txt}", request["value"])
    assert site.cli("validate", "--check", request["id"]).returncode == 0
    status, body = api_issue(server, make_csr([txt]))
    assert status == 201, body
    assert site.cli("validate", "--check", "no-such-id").returncode == 4

    # The API door: the same use case over POST /api/v1/validations.
    api = "api-dns.example.jp"
    status, made = api_post(server, "/api/v1/validations", {"name": api, "method": "dns"})
    assert status == 201 and made["where"].startswith(f"add a TXT record _acme-challenge.{api}"), made
    status, body = api_post(server, f"/api/v1/validations/{made['id']}/check", {})
    assert status == 403 and body["error"] == "validation" and "no TXT record" in body["detail"], body
    status, made = api_post(server, "/api/v1/validations", {"name": api, "method": "dns"})
    zone.txt(f"_acme-challenge.{api}", made["value"])
    status, body = api_post(server, f"/api/v1/validations/{made['id']}/check", {})
    assert (status, body) == (200, {"name": api, "method": "BR 3.2.2.4.7", "valid": True})
    assert api_issue(server, make_csr([api]))[0] == 201
    assert api_post(server, "/api/v1/validations", {"name": "x.example.jp", "method": "email"})[0] == 400
    assert api_post(server, "/api/v1/validations/nope/check", {})[0] == 404
