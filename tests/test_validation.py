"""Domain validation (BR 3.2.2.4.7, .18, .19) and CAA (RFC 8659) against a real DNS server and
real HTTP servers on loopback (tests/support/dns_server.py, http_site.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from shirushi.config import load
from shirushi.errors import ValidationError
from shirushi.store import Store
from shirushi.validation import acme_http, addresses, caa, dns_change, values, website_change
from shirushi.validation.dns import Resolver
from shirushi.validation.gate import DomainGate
from shirushi.validation.record import record_attempt
from support.dns_server import Zone, dns_server
from support.http_site import Site, http_site

OURS = ("shirushi.example",)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def dns() -> Iterator[tuple[Zone, Resolver, str]]:
    with dns_server() as (zone, address):
        yield zone, Resolver(address, timeout=1.0), address


@pytest.fixture
def site() -> Iterator[Site]:
    with http_site() as s:
        yield s


def test_random_values_have_256_bits_and_expire_after_30_days() -> None:
    seen = {values.new_value() for _ in range(100)}
    assert len(seen) == 100
    assert all(len(v) == 43 for v in seen)  # 256 bits in base64url
    assert values.VALUE_BITS >= values.MIN_VALUE_BITS
    assert not values.expired(NOW, NOW + dt.timedelta(days=29))
    assert values.expired(NOW, NOW + dt.timedelta(days=30))


def test_address_rules() -> None:
    assert addresses.refusal("127.0.0.1", allow_loopback=False) is not None
    assert addresses.refusal("127.0.0.1", allow_loopback=True) is None
    for private in (
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "::ffff:10.0.0.1",
        "fe80::1",
        "0.0.0.0",
    ):
        assert addresses.refusal(private, allow_loopback=True) is not None, private
    assert addresses.refusal("203.0.113.5", allow_loopback=False) is not None  # documentation range
    assert addresses.refusal("8.8.8.8", allow_loopback=False) is None


def test_caa_evaluation_rules() -> None:
    assert caa.evaluate(((0, "issue", "shirushi.example"),), OURS, False)[0]
    assert caa.evaluate(((0, "issue", "Shirushi.Example; foo=bar"),), OURS, False)[0]
    assert not caa.evaluate(((0, "issue", "other.example"),), OURS, False)[0]
    assert not caa.evaluate(((0, "issue", ";"),), OURS, False)[0]
    # issuewild governs wildcards only, when present
    both = ((0, "issue", "shirushi.example"), (0, "issuewild", "other.example"))
    assert caa.evaluate(both, OURS, False)[0]
    assert not caa.evaluate(both, OURS, True)[0]
    assert caa.evaluate(((0, "issue", "shirushi.example"),), OURS, True)[0]
    # a critical unknown tag refuses; a non-critical one is ignored
    assert not caa.evaluate(((128, "tbs", "x"), (0, "issue", "shirushi.example")), OURS, False)[0]
    assert caa.evaluate(((0, "tbs", "x"), (0, "issue", "shirushi.example")), OURS, False)[0]
    assert caa.evaluate(((0, "iodef", "mailto:x@example.jp"),), OURS, False)[0]
    # RFC 8657 parameters
    bound = ((0, "issue", "shirushi.example; accounturi=https://ca/acct/1; validationmethods=dns-01"),)
    assert caa.evaluate(bound, OURS, False, account_uri="https://ca/acct/1", method="dns-01")[0]
    assert not caa.evaluate(bound, OURS, False, account_uri="https://ca/acct/2", method="dns-01")[0]
    assert not caa.evaluate(bound, OURS, False, account_uri="https://ca/acct/1", method="http-01")[0]


@pytest.mark.loopback
def test_caa_lookups_climb_the_tree_and_refuse_on_servfail(dns: tuple[Zone, Resolver, str]) -> None:
    zone, resolver, _ = dns
    zone.a("www.example.jp")
    assert caa.check(resolver, "www.example.jp", OURS).allowed  # no CAA record allows
    zone.caa("example.jp", (0, "issue", "other.example"))
    refused = caa.check(resolver, "www.example.jp", OURS)
    assert not refused.allowed and refused.relevant == "example.jp"
    zone.caa("www.example.jp", (0, "issue", "shirushi.example"))  # the closest set decides
    assert caa.check(resolver, "www.example.jp", OURS).allowed
    zone.caa("example.jp", (0, "issue", "shirushi.example"), (0, "issuewild", ";"))
    assert not caa.check(resolver, "*.example.jp", OURS).allowed
    assert caa.check(resolver, "example.jp", OURS).allowed
    zone.servfail.add("jp")
    failed = caa.check(resolver, "deep.other.jp", OURS)
    assert not failed.allowed and "SERVFAIL" in failed.reason
    zone.silent.add("quiet.jp")
    assert not caa.check(resolver, "quiet.jp", OURS).allowed  # a timeout refuses too


@pytest.mark.loopback
def test_dns_change_3_2_2_4_7(dns: tuple[Zone, Resolver, str]) -> None:
    zone, resolver, _ = dns
    value = values.new_value()
    assert dns_change.check(resolver, "example.jp", value).problem == "unauthorized"
    zone.txt("_acme-challenge.example.jp", "something else")
    assert dns_change.check(resolver, "example.jp", value).problem == "incorrectResponse"
    zone.txt("_acme-challenge.example.jp", "something else", value)
    ok = dns_change.check(resolver, "*.example.jp", value)
    assert ok.ok and ok.method == "3.2.2.4.7" and any(value in a for a in ok.answers)
    zone.servfail.add("_acme-challenge.broken.jp")
    assert dns_change.check(resolver, "broken.jp", value).problem == "dns"


@pytest.mark.loopback
def test_http_methods_3_2_2_4_18_and_19(dns: tuple[Zone, Resolver, str], site: Site) -> None:
    zone, resolver, _ = dns
    zone.a("www.example.jp")
    port = site.port
    value = values.new_value()
    site.routes["/.well-known/pki-validation/shirushi.txt"] = (200, {}, f"x\n{value}\n".encode())
    got = website_change.check(resolver, "www.example.jp", "shirushi.txt", value, port=port, allow_loopback=True)
    assert got.ok and got.method == "3.2.2.4.18"
    # loopback refused unless allowed
    refused = website_change.check(resolver, "www.example.jp", "shirushi.txt", value, port=port, allow_loopback=False)
    assert not refused.ok and refused.problem == "connection" and "loopback" in refused.detail

    token, keyauth = values.new_value(), "tok.thumb"
    path = "/.well-known/acme-challenge/" + token
    site.routes[path] = (200, {}, keyauth.encode() + b"\n")
    assert acme_http.check(resolver, "www.example.jp", token, keyauth, port=port, allow_loopback=True).ok
    wrong = acme_http.check(resolver, "www.example.jp", token, "tok.other", port=port, allow_loopback=True)
    assert wrong.problem == "incorrectResponse"
    missing = acme_http.check(resolver, "www.example.jp", "nope", keyauth, port=port, allow_loopback=True)
    assert missing.problem == "unauthorized"
    assert acme_http.check(resolver, "*.example.jp", token, keyauth, port=port, allow_loopback=True).problem == (
        "rejectedIdentifier"
    )
    # a redirect to a name that resolves to a private address is refused before connecting
    zone.a("inside.example.jp", "10.1.2.3")
    site.routes[path] = (302, {"Location": f"http://inside.example.jp:{port}/x"}, b"")
    private = acme_http.check(resolver, "www.example.jp", token, keyauth, port=port, allow_loopback=True)
    assert private.problem == "connection" and "private" in private.detail
    # a redirect to another port is refused (BR 3.2.2.4.18: the validation port only)
    site.routes[path] = (301, {"Location": "http://www.example.jp:1/x"}, b"")
    assert "port" in acme_http.check(resolver, "www.example.jp", token, keyauth, port=port, allow_loopback=True).detail
    # an oversized answer
    site.routes[path] = (200, {}, b"A" * 100_000)
    big = acme_http.check(resolver, "www.example.jp", token, keyauth, port=port, allow_loopback=True)
    assert not big.ok and big.problem == "incorrectResponse" and "larger" in big.detail
    # a name without an address
    assert acme_http.check(resolver, "gone.example.jp", token, keyauth, port=port, allow_loopback=True).problem == "dns"


@pytest.mark.loopback
def test_a_slow_server_times_out(dns: tuple[Zone, Resolver, str], site: Site) -> None:
    from shirushi.validation.http_fetch import fetch

    zone, resolver, _ = dns
    zone.a("slow.example.jp")
    site.routes["/x"] = (200, {}, b"late")
    site.slow["/x"] = 3.0
    got = fetch(resolver, "slow.example.jp", "/x", port=site.port, allow_loopback=True, timeout=0.5)
    assert not got.ok and got.problem == "connection" and "timed out" in got.detail


@pytest.mark.loopback
def test_gate_needs_a_current_validation_and_caa(tmp_path: Path, dns: tuple[Zone, Resolver, str]) -> None:
    zone, _resolver, address = dns
    settings = load(environ={"SHIRUSHI_VALIDATION__RESOLVER": address, "SHIRUSHI_DATA_DIR": str(tmp_path)})
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    gate = DomainGate(settings, store.validations)
    with pytest.raises(ValidationError) as no_dv:
        gate.check(["example.jp"], "api", NOW)
    assert no_dv.value.problem == "unauthorized"
    value = values.new_value()
    zone.txt("_acme-challenge.example.jp", value)
    http_only = acme_http.check(gate.resolver, "www.example.jp", "t", "k", port=1, allow_loopback=True)
    record_attempt(store.validations, http_only, NOW)  # a failure is audited, not usable
    record_attempt(store.validations, dns_change.check(gate.resolver, "example.jp", value), NOW)
    detail = gate.check(["example.jp", "*.example.jp"], "api", NOW + dt.timedelta(days=1))
    assert detail["validations"][0]["method"] == "BR 3.2.2.4.7"
    assert [c["allowed"] for c in detail["caa"]] == [True, True]
    # CAA is looked up at issuance, after the validation
    zone.caa("example.jp", (0, "issue", "other.example"))
    with pytest.raises(ValidationError) as by_caa:
        gate.check(["example.jp"], "api", NOW + dt.timedelta(days=1))
    assert by_caa.value.problem == "caa"
    zone.caa("example.jp")
    # stale reuse is refused
    with pytest.raises(ValidationError):
        gate.check(["example.jp"], "api", NOW + values.REUSE_PERIOD + dt.timedelta(seconds=1))
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        actions = [r.action for r in conn.execute(sa.text("select action from audit order by id"))]
    assert actions.count("domain-validation") == 1
    assert "domain-validation-failed" in actions and actions.count("issuance-refused") == 3
    store.close()


@pytest.mark.loopback
def test_a_wildcard_needs_a_dns_based_validation(tmp_path: Path, dns: tuple[Zone, Resolver, str], site: Site) -> None:
    """BR 3.2.2.4: only the DNS-based methods may validate a wildcard; CAA issuewild governs it."""
    zone, _resolver, address = dns
    settings = load(environ={"SHIRUSHI_VALIDATION__RESOLVER": address, "SHIRUSHI_DATA_DIR": str(tmp_path)})
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    gate = DomainGate(settings, store.validations)
    zone.a("example.jp")
    token, keyauth = values.new_value(), "t.k"
    site.routes["/.well-known/acme-challenge/" + token] = (200, {}, keyauth.encode())
    by_http = acme_http.check(gate.resolver, "example.jp", token, keyauth, port=site.port, allow_loopback=True)
    assert by_http.ok
    record_attempt(store.validations, by_http, NOW)
    assert gate.check(["example.jp"], "api", NOW)["validations"][0]["method"] == "BR 3.2.2.4.19"
    with pytest.raises(ValidationError) as http_only:
        gate.check(["*.example.jp"], "api", NOW)
    assert "DNS-based" in str(http_only.value) and http_only.value.names == ("*.example.jp",)
    value = values.new_value()
    zone.txt("_acme-challenge.example.jp", value)
    record_attempt(store.validations, dns_change.check(gate.resolver, "*.example.jp", value), NOW)
    assert gate.check(["*.example.jp"], "api", NOW)["validations"][0]["method"] == "BR 3.2.2.4.7"
    # issuewild, when present, decides for the wildcard alone (RFC 8659 4.3).
    zone.caa("example.jp", (0, "issue", "shirushi.example"), (0, "issuewild", "another-ca.example"))
    assert gate.check(["example.jp"], "api", NOW)["caa"][0]["allowed"]
    with pytest.raises(ValidationError) as by_caa:
        gate.check(["*.example.jp"], "api", NOW)
    assert by_caa.value.problem == "caa" and "issuewild" in str(by_caa.value)
    zone.caa("example.jp", (0, "issue", "another-ca.example"), (0, "issuewild", "shirushi.example"))
    assert gate.check(["*.example.jp"], "api", NOW)["caa"][0]["allowed"]
    store.close()
