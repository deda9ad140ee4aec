"""certbot (the stock ACME client) against a running `serve` with `acme.listen` set: http-01
through `certonly --standalone`, dns-01 through `--manual` hooks writing TXT records into the
test's DNS server, `renew --force-renewal`, `revoke` by account and by certificate key. The
certificates verify with openssl, pass pkilint, and their OCSP status follows the revocation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dns_server import Zone, dns_server
from support.serving import Site, free_port

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("certbot") is None, reason="certbot is not installed (scripts/setup --dev)"),
]


class Certbot:
    def __init__(self, root: Path, server: str, http_port: int) -> None:
        self.root = root
        self.server = server
        self.http_port = http_port

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            "certbot",
            *args,
            "--server",
            self.server,
            "--config-dir",
            str(self.root / "config"),
            "--work-dir",
            str(self.root / "work"),
            "--logs-dir",
            str(self.root / "logs"),
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--no-random-sleep-on-renew",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def live(self, name: str) -> Path:
        return self.root / "config" / "live" / name


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Zone, Certbot]]:
    root = tmp_path_factory.mktemp("acme")
    with dns_server() as (zone, resolver):
        zone.txt_file = root / "txt-records"
        zone.a("www.example.jp")
        zone.a("api.example.jp")
        zone.caa("example.jp", (0, "issue", "shirushi.example"))
        zone.caa("other.jp", (0, "issue", "another-ca.example"))
        zone.a("www.other.jp")
        acme_port, http_port = free_port(), free_port()
        site = Site(
            root / "site",
            SHIRUSHI_ACME__LISTEN=f"127.0.0.1:{acme_port}",
            SHIRUSHI_ACME__URL=f"http://127.0.0.1:{acme_port}/",
            SHIRUSHI_VALIDATION__RESOLVER=resolver,
            SHIRUSHI_VALIDATION__HTTP_PORT=str(http_port),
            SHIRUSHI_VALIDATION__ALLOW_LOOPBACK="true",
            SHIRUSHI_VALIDATION__ENFORCE="acme,api,cli",
            # DV through ACME and OV through the CLI from one issuing CA (docs/acme.md).
            SHIRUSHI_CA__ISSUING_CA_POLICY="any",
        )
        assert site.cli("init").returncode == 0
        with site.serving():
            from support.serving import wait_port

            wait_port(acme_port, site.proc)
            yield site, zone, Certbot(root / "certbot", f"http://127.0.0.1:{acme_port}/directory", http_port)


def standalone(bot: Certbot, *names: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    domains = [a for n in names for a in ("-d", n)]
    return bot.run(
        "certonly",
        "--standalone",
        "--http-01-port",
        str(bot.http_port),
        "--http-01-address",
        "127.0.0.1",
        "--key-type",
        "rsa",
        *domains,
        check=check,
    )


def openssl_verify(site: Site, cert: Path) -> None:
    root = site.data / "certs" / "root.pem"
    chain = cert.parent / "chain.pem"
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and ": OK" in result.stdout, result.stdout + result.stderr


def pkilint(cert: Path) -> None:
    tool = Path(sys.executable).parent / "lint_cabf_serverauth_cert"
    result = subprocess.run(
        [str(tool), "lint", "-d", "-t", "DV-FINAL-CERTIFICATE", str(cert)], capture_output=True, text=True, check=False
    )
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line or "FATAL" in line]
    # Loopback URLs of the test site are the only findings tolerated (ca.lint_allow_local_urls).
    assert all("internal_ip_address" in e or "internal_domain_name" in e for e in errors), result.stdout


def ocsp_status(site: Site, cert: Path) -> str:
    issuer = cert.parent / "chain.pem"
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", str(issuer), "-cert", str(cert), "-url", site.ocsp_url, "-noverify"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith(str(cert)):
            return line.split(":", 1)[1].strip()
    raise AssertionError(result.stdout + result.stderr)


def test_http01_issue_renew_and_revoke_by_account(acme: tuple[Site, Zone, Certbot]) -> None:
    site, _zone, bot = acme
    standalone(bot, "www.example.jp")
    cert = bot.live("www.example.jp") / "cert.pem"
    openssl_verify(site, cert)
    pkilint(cert)
    assert ocsp_status(site, cert) == "good"
    first = cert.read_bytes()
    bot.run("renew", "--force-renewal", "--cert-name", "www.example.jp")
    renewed = bot.live("www.example.jp") / "cert.pem"
    assert renewed.read_bytes() != first
    openssl_verify(site, renewed)
    bot.run("revoke", "--cert-path", str(renewed), "--reason", "superseded", "--no-delete-after-revoke")
    assert ocsp_status(site, renewed) == "revoked"


def certbot_log(bot: Certbot) -> str:
    # certbot 2.1 with Debian's josepy prints "AttributeError" for a server error; its log has it.
    return (bot.root / "logs" / "letsencrypt.log").read_text(errors="replace")


def test_dns01_through_manual_hooks(acme: tuple[Site, Zone, Certbot]) -> None:
    site, zone, bot = acme
    assert zone.txt_file is not None
    hook = bot.root.parent / "auth-hook.sh"
    hook.write_text(f'#!/bin/sh\necho "_acme-challenge.$CERTBOT_DOMAIN $CERTBOT_VALIDATION" >> {zone.txt_file}\n')
    hook.chmod(0o755)
    cleanup = bot.root.parent / "cleanup-hook.sh"
    cleanup.write_text("#!/bin/sh\ntrue\n")
    cleanup.chmod(0o755)
    bot.run(
        "certonly",
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        str(hook),
        "--manual-cleanup-hook",
        str(cleanup),
        "--key-type",
        "rsa",
        "-d",
        "example.jp",
        "-d",
        "mail.example.jp",
        "--cert-name",
        "by-dns",
    )
    cert = bot.live("by-dns") / "cert.pem"
    openssl_verify(site, cert)
    pkilint(cert)
    assert ocsp_status(site, cert) == "good"


def test_revoke_by_certificate_key_blocks_the_key(acme: tuple[Site, Zone, Certbot]) -> None:
    site, _zone, bot = acme
    standalone(bot, "api.example.jp")
    live = bot.live("api.example.jp")
    other = Certbot(bot.root.parent / "stranger", bot.server, bot.http_port)  # another account
    other.run(
        "revoke",
        "--cert-path",
        str(live / "cert.pem"),
        "--key-path",
        str(live / "privkey.pem"),
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    assert ocsp_status(site, live / "cert.pem") == "revoked"
    csr = bot.root.parent / "reuse.csr"
    subprocess.run(
        ["openssl", "req", "-new", "-key", str(live / "privkey.pem"), "-subj", "/CN=api.example.jp", "-out", str(csr)],
        check=True,
        capture_output=True,
    )
    reuse = bot.run(
        "certonly",
        "--standalone",
        "--http-01-port",
        str(bot.http_port),
        "--http-01-address",
        "127.0.0.1",
        "--csr",
        str(csr),
        "-d",
        "api.example.jp",
        "--cert-path",
        str(bot.root.parent / "reuse.pem"),
        "--fullchain-path",
        str(bot.root.parent / "reuse-full.pem"),
        "--chain-path",
        str(bot.root.parent / "reuse-chain.pem"),
        check=False,
    )
    assert reuse.returncode != 0 and "blocked" in certbot_log(bot)


def test_caa_naming_another_ca_is_refused(acme: tuple[Site, Zone, Certbot]) -> None:
    _site, _zone, bot = acme
    result = standalone(bot, "www.other.jp", check=False)
    assert result.returncode != 0
    assert "urn:ietf:params:acme:error:caa" in certbot_log(bot)


def test_api_door_enforces_the_same_checks(acme: tuple[Site, Zone, Certbot]) -> None:
    site, _zone, _bot = acme
    from support.pki import make_csr

    csr = site.root / "api.csr"
    csr.write_bytes(make_csr(["www.example.jp"]))
    ok = site.cli("issue", "--csr", str(csr))  # validated through ACME above: reused
    assert ok.returncode == 0, ok.stdout + ok.stderr
    csr.write_bytes(make_csr(["never.example.jp"]))
    refused = site.cli("issue", "--csr", str(csr))
    assert refused.returncode == 3 and "domain validation" in refused.stderr, refused.stderr
