"""Stock TLS stacks judge Shirushi's responses as stapled by a real server (RFC 6066 section 8).

Apache httpd's mod_ssl fetches from the AIA URL itself and staples; `openssl s_client -status`
reads the staple, good and then, after a revocation and the stapling cache's expiry, revoked.
GnuTLS (`gnutls-cli --ocsp`) and curl (`--cert-status`, OpenSSL) check what nginx staples from a
`shirushi staple` file: both accept the good response and refuse the handshake once it says
revoked. Each runs against a real `shirushi serve` on 127.0.0.1. docs/interop.md has the results.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.serving import Site, free_port, wait_port
from support.stock_clients import asked, revoke, serving_site
from test_stapling import HOST, Leaf, Nginx, s_client, stapled, stop, tls_nginx, wait_for_staple

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

APACHE = shutil.which("apache2") or shutil.which("httpd") or "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
GNUTLS_CLI = shutil.which("gnutls-cli")
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving_site(tmp_path_factory.mktemp("stock-tls")) as s:
        yield s


# -- Apache httpd, mod_ssl ------------------------------------------------------------------


class Apache:
    """Apache httpd in the foreground (`-DFOREGROUND`), from a configuration written here, with
    its pid file, logs, runtime files and stapling cache in `directory` (no system service)."""

    def __init__(self, directory: Path, leaf: Leaf) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.port = free_port()
        modules = ("mpm_event", "authz_core", "socache_shmcb", "ssl")
        lines = [
            f"ServerRoot {directory}",
            f"DefaultRuntimeDir {directory}",
            f"PidFile {directory}/httpd.pid",
            f"ErrorLog {directory}/error.log",
            "LogLevel warn ssl:debug",  # mod_ssl's account of each OCSP fetch
            *(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in modules),
            # httpd refuses to serve as root: its children switch to an unprivileged user.
            *(["User nobody", "Group nogroup"] if os.geteuid() == 0 else []),
            "StartServers 1",
            "ServerLimit 1",
            "ThreadsPerChild 8",
            "MaxRequestWorkers 8",
            "MinSpareThreads 1",
            "MaxSpareThreads 8",
            f"ServerName {HOST}",
            f"Listen 127.0.0.1:{self.port}",
            "SSLSessionCache none",
            f"SSLStaplingCache shmcb:{directory}/stapling(128000)",
            # The cache keeps a response for this long (default 3600 s): short, so that the test
            # sees the refresh after a revocation within seconds.
            "SSLStaplingStandardCacheTimeout 1",
            "SSLStaplingErrorCacheTimeout 1",
            "SSLStaplingResponderTimeout 5",
            f"<VirtualHost 127.0.0.1:{self.port}>",
            f"    ServerName {HOST}",
            "    SSLEngine on",
            f"    SSLCertificateFile {leaf.chain_path}",
            f"    SSLCertificateKeyFile {leaf.key_path}",
            "    SSLUseStapling on",
            # The default: pass a revoked response on to clients rather than stapling nothing.
            "    SSLStaplingReturnResponderErrors on",
            "</VirtualHost>",
        ]
        self.conf = directory / "httpd.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Apache]:
        with open(self.dir / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [APACHE, "-f", str(self.conf), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                wait_port(self.port, self.proc, timeout=15)
            except (RuntimeError, TimeoutError) as exc:
                stderr = (self.dir / "stderr.log").read_text(errors="replace")
                raise AssertionError(f"httpd did not start: {exc}\n{stderr}{self.error_log()}") from None
            yield self
        finally:
            stop(self.proc)  # SIGTERM: the parent stops its children before it exits
            self.proc = None


needs_apache = pytest.mark.skipif(
    not (Path(APACHE).exists() and (APACHE_MODULES / "mod_ssl.so").exists()),
    reason="Apache httpd with mod_ssl is not installed (Debian package apache2-bin)",
)


@needs_apache
def test_apache_mod_ssl_staples_good_then_revoked(site: Site, tmp_path: Path) -> None:
    """mod_ssl (`SSLUseStapling on`) fetches from the AIA URL during the handshake (POST over
    HTTP/1.0, SHA-1 CertID), caches and staples our response: `openssl s_client -status` sees it
    good and verified from the first handshake. After a revocation and the cache's expiry, mod_ssl
    fetches again and staples the revoked response (logging the status at `error` level)."""
    leaf = Leaf(site, tmp_path / "leaf")
    with Apache(tmp_path / "apache", leaf).running() as apache:
        out = s_client(apache.port, leaf)  # the very first handshake carries it
        block = stapled(out)
        assert "OCSP Response Status: successful (0x0)" in block, out + apache.error_log()
        assert "Cert Status: good" in block and f"Serial Number: {leaf.serial_text}" in block, out
        assert "Hash Algorithm: sha1" in block and "Next Update:" in block, out
        assert "Verify return code: 0 (ok)" in out, out
        assert "Cert Status: good" in stapled(s_client(apache.port, leaf, "-tls1_2"))

        revoke(site, leaf.serial, "superseded")
        block = stapled(wait_for_staple(apache.port, leaf, "revoked"))
        assert "Revocation Reason: superseded (0x4)" in block, block
        assert f"Serial Number: {leaf.serial_text}" in block
        # mod_ssl writes serials as OpenSSL does, padded to whole octets.
        verdict = f"response has certificate status revoked (reason: superseded) for serial number {leaf.serial_text}"
        # mod_ssl may write its log line a moment after the handshake that carried the staple.
        deadline = time.monotonic() + 10
        while verdict not in (log := apache.error_log()) and time.monotonic() < deadline:
            time.sleep(0.2)
    # mod_ssl's own account: the responder's exact Content-Type, then its verdict on the status.
    assert "OCSP response header: Content-Type: application/ocsp-response" in log, log
    assert "stapling_cb: success renewing response" in log
    assert verdict in log, log
    assert set(asked(site, leaf.serial, 2)) == {("POST", "sha1")}


# -- GnuTLS and curl against nginx stapling a `shirushi staple` file --------------------------


def staple_file(site: Site, leaf: Leaf, path: Path, status: str) -> None:
    result = site.cli("staple", "--cert", str(leaf.chain_path), "--out", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{path}: {status}, nextUpdate "), result.stdout


@contextlib.contextmanager
def stapling_nginx(leaf: Leaf, directory: Path, staple: Path, status: str) -> Iterator[Nginx]:
    """nginx stapling the `shirushi staple` file `staple`; s_client has seen it say `status`.
    (A fresh nginx for each file: after a reload, an old worker may still answer a handshake.)"""
    server = tls_nginx(
        directory,
        leaf,
        "ssl_stapling on;",
        "ssl_stapling_verify on;",
        f"ssl_trusted_certificate {leaf.trusted_path};",
        f"ssl_stapling_file {staple};",
    )
    with server.running() as nginx:
        assert f"Cert Status: {status}" in stapled(s_client(nginx.port, leaf))
        yield nginx


def good_staple(site: Site, tmp_path: Path) -> tuple[Leaf, Path]:
    """A new certificate and `shirushi staple`'s good response for it, in `tmp_path/ocsp.der`."""
    leaf = Leaf(site, tmp_path / "leaf")
    staple = tmp_path / "ocsp.der"
    staple_file(site, leaf, staple, "good")
    return leaf, staple


def revoke_and_restaple(site: Site, leaf: Leaf, staple: Path) -> None:
    revoke(site, leaf.serial, "keyCompromise")
    staple_file(site, leaf, staple, "revoked")


def gnutls_cli(port: int, leaf: Leaf, save: Path) -> tuple[int, str]:
    """One `gnutls-cli --ocsp` connection; its exit status and output. `--save-ocsp` keeps the
    staple it received. Had it found no usable staple, it would have asked the responder itself
    and printed "Connecting to OCSP server"."""
    assert GNUTLS_CLI is not None
    result = subprocess.run(
        [
            GNUTLS_CLI,
            "--ocsp",
            f"--save-ocsp={save}",
            f"--x509cafile={leaf.root_path}",
            f"--sni-hostname={HOST}",
            f"--verify-hostname={HOST}",
            f"--port={port}",
            "127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.skipif(GNUTLS_CLI is None, reason="gnutls-cli is not installed (Debian package gnutls-bin)")
def test_gnutls_cli_ocsp_checks_the_staple_from_nginx(site: Site, tmp_path: Path) -> None:
    """`gnutls-cli --ocsp` verifies the stapled response (signature by the delegated signer,
    CertID, validity) and trusts the certificate when it is good; when nginx staples the revoked
    response, it refuses the certificate. Both times the staple alone decides."""
    leaf, staple = good_staple(site, tmp_path)
    with stapling_nginx(leaf, tmp_path / "nginx", staple, "good") as nginx:
        code, out = gnutls_cli(nginx.port, leaf, tmp_path / "good.der")
    assert code == 0, out
    assert "- Status: The certificate is trusted." in out, out
    assert "OCSP status request" in out and "Connecting to OCSP server" not in out, out
    assert (tmp_path / "good.der").read_bytes() == staple.read_bytes()

    revoke_and_restaple(site, leaf, staple)
    with stapling_nginx(leaf, tmp_path / "nginx", staple, "revoked") as nginx:
        code, out = gnutls_cli(nginx.port, leaf, tmp_path / "revoked.der")
    assert code == 1, out
    assert "The certificate is NOT trusted. The certificate chain is revoked." in out, out
    assert "The certificate was revoked via OCSP" in out, out
    assert "Connecting to OCSP server" not in out, out
    assert (tmp_path / "revoked.der").read_bytes() == staple.read_bytes()


def curl(port: int, leaf: Leaf) -> tuple[int, str, str]:
    """One `curl --cert-status` GET of nginx's page; exit status, body and verbose log."""
    assert CURL is not None
    result = subprocess.run(
        [
            CURL,
            "--verbose",
            "--silent",
            "--show-error",
            "--cert-status",
            "--cacert",
            str(leaf.root_path),
            "--resolve",
            f"{HOST}:{port}:127.0.0.1",
            f"https://{HOST}:{port}/",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)")
def test_curl_cert_status_checks_the_staple_from_nginx(site: Site, tmp_path: Path) -> None:
    """`curl --cert-status` (OpenSSL) requires a stapled response, verifies it and fetches the page
    when it is good; when nginx staples the revoked response, curl fails with exit status 91
    (CURLE_SSL_INVALIDCERTSTATUS) and names the reason."""
    leaf, staple = good_staple(site, tmp_path)
    with stapling_nginx(leaf, tmp_path / "nginx", staple, "good") as nginx:
        code, body, log = curl(nginx.port, leaf)
    assert code == 0, log
    assert body == "ok"
    assert "SSL certificate status: good (0)" in log, log

    revoke_and_restaple(site, leaf, staple)
    with stapling_nginx(leaf, tmp_path / "nginx", staple, "revoked") as nginx:
        code, body, log = curl(nginx.port, leaf)
    assert code == 91, log
    assert body == ""
    assert "SSL certificate status: revoked (1)" in log, log
    assert "curl: (91) SSL certificate revocation reason: keyCompromise (1)" in log, log
