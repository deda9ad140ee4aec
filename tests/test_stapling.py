"""TLS servers staple Shirushi's OCSP responses (policy 4.9.9, RFC 6066 section 8).

Real servers on 127.0.0.1 judge the responses: nginx fetching from the AIA URL by itself and
serving a file written by `shirushi staple`, HAProxy loading a `<cert>.ocsp` file, and nginx as a
reverse proxy in front of the responder (pitfall P2: `//` and base64 `/`). `openssl s_client
-status` reads what was stapled. docs/stapling.md shows the same configurations.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pki import make_csr, make_key, run_cli, split_pem
from support.serving import Site, free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

HOST = "www.example.jp"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
STAPLE_DEADLINE = 30.0  # seconds for nginx to fetch lazily and staple


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("stapling"))
    result = s.cli("init")
    assert result.returncode == 0, result.stderr
    with s.serving():
        yield s


_CA_CERTS: dict[Path, str] = {}


def ca_certs(site: Site) -> str:
    """`shirushi ca-certs`: the issuing CA, then the root (PEM); asked once per site."""
    if site.data not in _CA_CERTS:
        result = site.cli("ca-certs")
        assert result.returncode == 0, result.stderr
        _CA_CERTS[site.data] = result.stdout
    return _CA_CERTS[site.data]


class Leaf:
    """A server certificate issued through `shirushi issue`, with the files TLS servers load."""

    def __init__(self, site: Site, directory: Path, name: str = HOST) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        key = make_key()
        (directory / "req.pem").write_bytes(make_csr([name], key=key))
        result = site.cli("issue", "--csr", str(directory / "req.pem"))
        assert result.returncode == 0, result.stderr
        self.cert, self.issuer = split_pem(result.stdout)
        self.serial = format(self.cert.serial_number, "X")
        self.serial_text = self.serial.rjust(len(self.serial) + len(self.serial) % 2, "0")  # as OpenSSL prints it
        cas = ca_certs(site)
        issuing, root = split_pem(cas)
        assert issuing == self.issuer and root.subject == root.issuer
        pem = serialization.Encoding.PEM
        self.key_path = directory / "key.pem"
        self.key_path.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        self.key_path.chmod(0o600)
        self.cert_path = directory / "leaf.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(pem))
        self.chain_path = directory / "chain.pem"  # leaf + issuing CA: nginx ssl_certificate
        self.chain_path.write_bytes(self.cert.public_bytes(pem) + self.issuer.public_bytes(pem))
        self.trusted_path = directory / "trusted.pem"  # issuing CA + root: ssl_trusted_certificate
        self.trusted_path.write_text(cas)
        self.root_path = directory / "root.pem"  # what the TLS client trusts
        self.root_path.write_bytes(root.public_bytes(pem))

    def request(self, alg: hashes.HashAlgorithm) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(self.cert, self.issuer, alg)
        return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def leaf(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Leaf:
    return Leaf(site, tmp_path_factory.mktemp("leaf"))


def s_client(port: int, leaf: Leaf, *extra: str) -> str:
    """One handshake with `openssl s_client -status`; its whole output."""
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            HOST,
            "-status",
            "-CAfile",
            str(leaf.root_path),
            "-verify_hostname",
            HOST,
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return result.stdout + result.stderr


def stapled(out: str) -> str:
    """The `OCSP response:` block of s_client's output, or '' when nothing was stapled."""
    if "OCSP response: no response sent" in out or "OCSP response:" not in out:
        return ""
    return out.split("OCSP response:", 1)[1].split("\n---\n", 1)[0]


def wait_for_staple(port: int, leaf: Leaf, status: str, *extra: str) -> str:
    """Handshake until the staple says `Cert Status: status` (bounded); the last output."""
    deadline = time.monotonic() + STAPLE_DEADLINE
    while True:
        out = s_client(port, leaf, *extra)
        if f"Cert Status: {status}" in stapled(out):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"no staple with Cert Status: {status} within {STAPLE_DEADLINE:.0f} s:\n{out}")
        time.sleep(0.5)


def assert_good_staple(out: str, leaf: Leaf) -> None:
    block = stapled(out)
    assert "OCSP Response Status: successful (0x0)" in block, out
    assert "Cert Status: good" in block, out
    assert f"Serial Number: {leaf.serial_text}" in block, out
    assert "Hash Algorithm: sha1" in block, out  # the CertID nginx and HAProxy match on
    assert "Next Update:" in block, out
    assert "Verify return code: 0 (ok)" in out, out


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


class Nginx:
    """nginx in the foreground with everything (pid, logs, temp paths) in `directory`."""

    def __init__(self, directory: Path, *server: str, tls: bool = False) -> None:
        """`server`: the directives of the one `server` block, which listens on `self.port`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.port = free_port()
        lines = [
            *(["user root;"] if os.geteuid() == 0 else []),  # workers need no other user here
            "daemon off;",
            "worker_processes 1;",
            f"pid {directory}/nginx.pid;",
            f"error_log {directory}/error.log debug;",  # Debian's nginx is built --with-debug
            "events { worker_connections 64; }",
            "http {",
            f"    access_log {directory}/access.log;",
            *(
                f"    {kind}_temp_path {directory}/{kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            "    server {",
            f"        listen 127.0.0.1:{self.port}{' ssl' if tls else ''};",
            *(f"        {line}" for line in server),
            "    }",
            "}",
        ]
        self.conf = directory / "nginx.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Nginx]:
        with open(self.dir / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [NGINX, "-p", str(self.dir), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                wait_port(self.port, self.proc, timeout=15)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(
                    f"nginx did not start: {exc}\n{(self.dir / 'stderr.log').read_text()}{self.error_log()}"
                ) from None
            yield self
        finally:
            stop(self.proc)
            self.proc = None

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


def tls_nginx(directory: Path, leaf: Leaf, *lines: str) -> Nginx:
    """nginx serving `leaf` (with its issuing CA) over TLS, plus `lines`."""
    return Nginx(
        directory,
        f"server_name {HOST};",
        f"ssl_certificate {leaf.chain_path};",
        f"ssl_certificate_key {leaf.key_path};",
        *lines,
        "location / { return 200 'ok'; }",
        tls=True,
    )


# -- nginx ----------------------------------------------------------------------------------


def verifying_nginx(tmp_path: Path, leaf: Leaf) -> Nginx:
    """nginx given only the certificate: it fetches from the AIA URL and verifies what it staples."""
    return tls_nginx(
        tmp_path / "nginx",
        leaf,
        "ssl_stapling on;",
        "ssl_stapling_verify on;",
        f"ssl_trusted_certificate {leaf.trusted_path};",
    )


def test_nginx_fetches_from_the_aia_url_and_staples_good(site: Site, leaf: Leaf, tmp_path: Path) -> None:
    """nginx, given only the certificate, fetches from its AIA OCSP URL (GET, SHA-1 CertID, HTTP/1.0),
    verifies the response against ssl_trusted_certificate and staples it: our responses meet every
    nginx check (HTTP 200, exact Content-Type, responder certificate in `certs`, validity)."""
    server = verifying_nginx(tmp_path, leaf)
    with server.running() as nginx:
        out = wait_for_staple(nginx.port, leaf, "good")
        assert_good_staple(out, leaf)
        # TLS 1.2 carries the staple in a CertificateStatus message instead of the certificate entry.
        assert_good_staple(s_client(nginx.port, leaf, "-tls1_2"), leaf)
        log = nginx.error_log()
    # nginx's own account (debug log): HTTP 200, the exact Content-Type, a verified `good` response.
    assert "ssl ocsp status 200" in log, log
    assert 'ssl ocsp header "Content-Type: application/ocsp-response"' in log
    assert "ssl ocsp response, good, " in log
    assert not [line for line in log.splitlines() if "[error]" in line or "[warn]" in line or "[crit]" in line]


@pytest.fixture(scope="module")
def ecdsa_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A CA whose delegated OCSP signer has a P-256 key (`ocsp.signer_key = "ecdsa-p256"`)."""
    s = Site(tmp_path_factory.mktemp("stapling-ecdsa"), SHIRUSHI_OCSP__SIGNER_KEY="ecdsa-p256")
    result = s.cli("init")
    assert result.returncode == 0, result.stderr
    with s.serving():
        yield s


def test_nginx_staples_the_responses_of_an_ecdsa_signer(ecdsa_site: Site, tmp_path: Path) -> None:
    """The same nginx check with an ECDSA P-256 delegated signer under the RSA issuing CA."""
    leaf = Leaf(ecdsa_site, tmp_path / "leaf")
    server = verifying_nginx(tmp_path, leaf)
    with server.running() as nginx:
        out = wait_for_staple(nginx.port, leaf, "good")
        assert_good_staple(out, leaf)
        assert "Signature Algorithm: ecdsa-with-SHA256" in out, out
        log = nginx.error_log()
    assert "ssl ocsp response, good, " in log, log
    assert not [line for line in log.splitlines() if "[error]" in line or "[warn]" in line or "[crit]" in line]


def test_nginx_stapling_file_from_shirushi_staple(site: Site, tmp_path: Path) -> None:
    """`shirushi staple --cert chain.pem --out FILE` writes a DER response that nginx
    `ssl_stapling_file` staples from the first handshake on; after a revocation, running it again
    and reloading nginx staples `revoked`; without the reload nginx keeps the old file's response."""
    leaf = Leaf(site, tmp_path / "leaf")
    staple = tmp_path / "ocsp.der"
    result = site.cli("staple", "--cert", str(leaf.chain_path), "--out", str(staple))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{staple}: good, nextUpdate "), result.stdout
    server = tls_nginx(
        tmp_path / "nginx",
        leaf,
        "ssl_stapling on;",
        "ssl_stapling_verify on;",
        f"ssl_trusted_certificate {leaf.trusted_path};",
        f"ssl_stapling_file {staple};",
    )
    with server.running() as nginx:
        out = s_client(nginx.port, leaf)  # the very first handshake
        assert_good_staple(out, leaf)
        assert_good_staple(s_client(nginx.port, leaf, "-tls1_2"), leaf)

        assert site.cli("revoke", leaf.serial, "--reason", "keyCompromise").returncode == 0
        result = site.cli("staple", "--cert", str(leaf.chain_path), "--out", str(staple))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{staple}: revoked, nextUpdate "), result.stdout
        # nginx reads ssl_stapling_file only when it loads its configuration: a new file needs a reload.
        assert "Cert Status: good" in stapled(s_client(nginx.port, leaf))
        nginx.reload()
        out = wait_for_staple(nginx.port, leaf, "revoked")
    block = stapled(out)
    assert "Revocation Reason: keyCompromise (0x1)" in block, out
    assert f"Serial Number: {leaf.serial_text}" in block


def openssl_checks_staple(path: Path, leaf: Leaf) -> str:
    """`openssl ocsp -respin`: the file verifies against the CA and is about this certificate."""
    result = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            str(path),
            "-issuer",
            str(leaf.trusted_path),
            "-cert",
            str(leaf.cert_path),
            "-CAfile",
            str(leaf.trusted_path),
            "-no_nonce",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("source", ["aia", "local-ca"])
def test_staple_a_leaf_only_file(site: Site, leaf: Leaf, tmp_path: Path, source: str) -> None:
    """`staple --cert leaf.pem --out FILE` with the leaf alone: the issuer comes from the local
    CA (run with its configuration) or from the AIA caIssuers URL (run anywhere else)."""
    env = dict(site.env)
    if source == "aia":
        env["SHIRUSHI_DATA_DIR"] = str(tmp_path / "no-ca-here")
    out = tmp_path / "ocsp.der"
    result = run_cli(["staple", "--cert", str(leaf.cert_path), "--out", str(out)], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{out}: good, nextUpdate "), result.stdout
    checked = openssl_checks_staple(out, leaf)
    assert "Response verify OK" in checked and f"{leaf.cert_path}: good" in checked, checked


# -- HAProxy --------------------------------------------------------------------------------


class HAProxy:
    """HAProxy in the foreground (`-db`) with its admin socket and files in `directory`."""

    def __init__(self, directory: Path, crt: Path) -> None:
        assert HAPROXY is not None
        self.dir = directory
        self.port = free_port()
        self.socket = directory / "admin.sock"
        self.conf = directory / "haproxy.cfg"
        self.conf.write_text(
            "global\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n"
            "frontend tls\n"
            f"    bind 127.0.0.1:{self.port} ssl crt {crt}\n"
            "    http-request return status 200 content-type text/plain string ok\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        path = self.dir / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextlib.contextmanager
    def running(self) -> Iterator[HAProxy]:
        assert HAPROXY is not None
        with open(self.dir / "haproxy.log", "wb") as log:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            try:
                wait_port(self.port, self.proc, timeout=15)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"haproxy did not start: {exc}\n{self.output()}") from None
            yield self
        finally:
            stop(self.proc)
            self.proc = None

    def command(self, line: str) -> str:
        """One command on the admin socket (non-interactive: HAProxy closes after answering)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


def haproxy_crt(leaf: Leaf, directory: Path) -> Path:
    """HAProxy's `crt` file: leaf, issuing CA (HAProxy finds the OCSP issuer there), key."""
    directory.mkdir(parents=True, exist_ok=True)
    crt = directory / "site.pem"
    crt.write_bytes(leaf.chain_path.read_bytes() + leaf.key_path.read_bytes())
    crt.chmod(0o600)
    return crt


needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian package haproxy)")


@needs_haproxy
def test_haproxy_loads_the_ocsp_file_from_shirushi_staple_dir(site: Site, leaf: Leaf, tmp_path: Path) -> None:
    """`shirushi staple --dir DIR` writes `site.pem.ocsp` next to HAProxy's `site.pem` (leaf, chain,
    key); HAProxy loads it (its checks: one SingleResponse, good or revoked, nextUpdate present,
    CertID of this certificate) and staples it from the first handshake. Its runtime API accepts
    a fresh response too, and refuses one without nextUpdate, so the check is real."""
    hap = tmp_path / "haproxy"
    crt = haproxy_crt(leaf, hap)
    result = site.cli("staple", "--dir", str(hap))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{crt}.ocsp: good, nextUpdate "), result.stdout
    with HAProxy(hap, crt).running() as haproxy:
        out = s_client(haproxy.port, leaf)
        assert_good_staple(out, leaf)
        assert_good_staple(s_client(haproxy.port, leaf, "-tls1_2"), leaf)
        # HAProxy's own account of what it loaded.
        ids = haproxy.command("show ssl ocsp-response")
        assert f"Serial Number: {leaf.serial_text}" in ids, ids
        key = ids.split("Certificate ID key : ", 1)[1].split()[0]
        loaded = haproxy.command(f"show ssl ocsp-response {key}")
        assert "OCSP Response Status: successful (0x0)" in loaded, loaded
        assert "Cert Status: good" in loaded and "Next Update:" in loaded
        assert loaded.count("Certificate ID:") == 1  # one SingleResponse
        # The runtime API runs the same checks as loading: a fresh response passes, ...
        fresh = tmp_path / "fresh.der"
        result = site.cli("staple", "--cert", str(leaf.chain_path), "--out", str(fresh))
        assert result.returncode == 0, result.stderr
        answer = haproxy.command(f"set ssl ocsp-response {base64.b64encode(fresh.read_bytes()).decode()}")
        assert answer.strip() == "OCSP Response updated!", answer
        # ... one without nextUpdate (RFC 9919 requires it) is refused.
        answer = haproxy.command(f"set ssl ocsp-response {base64.b64encode(without_next_update(leaf)).decode()}")
        assert "missing nextupdate" in answer.lower(), answer
        assert_good_staple(s_client(haproxy.port, leaf), leaf)
        output = haproxy.output()
    # A refused .ocsp file is only a start-up warning ("Loading: OCSP single response: ... Content
    # will be ignored."), and `show ssl ocsp-response` still lists its certificate ID.
    assert not [line for line in output.splitlines() if "[WARNING]" in line or "[ALERT]" in line], output


def wait_for_file_status(path: Path, status: ocsp.OCSPCertStatus, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STAPLE_DEADLINE
    while True:
        if path.exists() and ocsp.load_der_ocsp_response(path.read_bytes()).certificate_status == status:
            return
        assert proc.poll() is None, f"`shirushi staple --every` exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} not {status.name} within {STAPLE_DEADLINE:.0f} s"
        time.sleep(0.2)


@needs_haproxy
def test_staple_every_refreshes_the_file_and_haproxy_takes_it_at_runtime(site: Site, tmp_path: Path) -> None:
    """`shirushi staple --dir DIR --every D` keeps running and rewrites `site.pem.ocsp` every D, so
    a revocation reaches the file; HAProxy (2.6, no ocsp-update) keeps what it loaded until it is
    given the new file through `set ssl ocsp-response` (or reloads), then staples `revoked`."""
    leaf = Leaf(site, tmp_path / "leaf")
    hap = tmp_path / "haproxy"
    crt = haproxy_crt(leaf, hap)
    ocsp_file = hap / "site.pem.ocsp"
    with open(tmp_path / "staple.log", "wb") as log:
        refresher = subprocess.Popen(
            [sys.executable, "-m", "shirushi", "staple", "--dir", str(hap), "--every", "1s"],
            env=site.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_file_status(ocsp_file, ocsp.OCSPCertStatus.GOOD, refresher)
        with HAProxy(hap, crt).running() as haproxy:
            assert_good_staple(s_client(haproxy.port, leaf), leaf)
            assert site.cli("revoke", leaf.serial, "--reason", "superseded").returncode == 0
            wait_for_file_status(ocsp_file, ocsp.OCSPCertStatus.REVOKED, refresher)
            assert "Cert Status: good" in stapled(s_client(haproxy.port, leaf))  # not re-read by itself
            answer = haproxy.command(f"set ssl ocsp-response {base64.b64encode(ocsp_file.read_bytes()).decode()}")
            assert answer.strip() == "OCSP Response updated!", answer
            block = stapled(s_client(haproxy.port, leaf))
        assert "Cert Status: revoked" in block and "Revocation Reason: superseded (0x4)" in block, block
        assert refresher.poll() is None  # still refreshing
    finally:
        stop(refresher)


def without_next_update(leaf: Leaf) -> bytes:
    """A response for `leaf` that lacks nextUpdate, signed by a throwaway key (HAProxy does not
    verify signatures of the responses it is given, only their content)."""
    key = make_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "not a responder")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signer = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(leaf.cert, leaf.issuer, hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, now, None, None, None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer)
        .sign(key, hashes.SHA256())
    )
    return response.public_bytes(serialization.Encoding.DER)


# -- nginx as a reverse proxy in front of the responder ------------------------------------


def get_through(port: int, path: str) -> tuple[int, str, bytes]:
    """GET `path` sent exactly as given (no normalisation by the client)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        conn.close()


def assert_answered_good(port: int, path: str, leaf: Leaf) -> None:
    status, content_type, body = get_through(port, path)
    assert status == 200, (path, status, body[:200])
    assert content_type == "application/ocsp-response"
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, (path, response.response_status)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == leaf.cert.serial_number


def slash_and_plus_request(site: Site, leaf: Leaf, directory: Path) -> tuple[Leaf, str]:
    """An issued certificate whose OCSP request (SHA-1 or SHA-256 CertID, no nonce: what staplers
    send) has both `/` and `+` in its base64; the request bytes are fixed by the serial, so issue
    certificates until one has them."""
    for attempt in range(12):
        for alg in (hashes.SHA1(), hashes.SHA256()):
            b64 = base64.b64encode(leaf.request(alg)).decode()
            if "/" in b64 and "+" in b64:
                return leaf, b64
        leaf = Leaf(site, directory / f"leaf{attempt}")
    raise AssertionError("no request with '/' and '+' in its base64 after 12 certificates")


def double_slash_request(leaf: Leaf) -> str:
    """A request for `leaf` whose base64 has `//` inside (and `+`): a random nonce varies the bytes.
    The responder answers it with the cached response (RFC 9654 allows that)."""
    while True:
        builder = ocsp.OCSPRequestBuilder().add_certificate(leaf.cert, leaf.issuer, hashes.SHA1())
        request = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False).build()
        b64 = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
        if "//" in b64 and "+" in b64:
            return b64


def proxy_forms(b64: str) -> list[str]:
    """Paths as clients send them: raw base64, percent-encoded (nginx's and HAProxy's fetchers),
    each with one leading `/` and with `//` (an AIA URL ending in `/` plus a client's `/`)."""
    encoded = urllib.parse.quote(b64, safe="")
    return [lead + form for form in (b64, encoded) for lead in ("/", "//")]


@pytest.mark.parametrize(
    "location",
    [
        "location / {{ proxy_pass http://127.0.0.1:{port}; }}",
        "location /ocsp/ {{ proxy_pass http://127.0.0.1:{port}/; }}",
    ],
    ids=["root", "prefix"],
)
def test_nginx_reverse_proxy_with_merge_slashes_off(site: Site, leaf: Leaf, tmp_path: Path, location: str) -> None:
    """Behind nginx with `merge_slashes off`, GET requests whose base64 holds `/`, `+`, `=` and
    `//`, raw or percent-encoded, after one or two leading slashes, reach the responder intact and
    are answered successful/good (pitfalls P1, P2; nginx's location matching is the risk)."""
    owner, b64 = slash_and_plus_request(site, leaf, tmp_path)
    nonce_b64 = double_slash_request(leaf)
    prefix = "/ocsp" if "/ocsp/" in location else ""
    with Nginx(tmp_path / "nginx", "merge_slashes off;", location.format(port=site.ocsp_port)).running() as nginx:
        for path in proxy_forms(b64):
            assert_answered_good(nginx.port, prefix + path, owner)
        for path in proxy_forms(nonce_b64):
            assert_answered_good(nginx.port, prefix + path, leaf)
        # POST, as `openssl ocsp` sends by default, passes too.
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        try:
            conn.request(
                "POST",
                prefix + "/",
                body=owner.request(hashes.SHA1()),
                headers={"Content-Type": "application/ocsp-request"},
            )
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        assert answer.status == 200
        assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_nginx_default_merge_slashes_breaks_a_rewritten_proxy_path(site: Site, leaf: Leaf, tmp_path: Path) -> None:
    """Why docs/stapling.md requires `merge_slashes off`: with nginx's default (on) and a
    `proxy_pass` that carries a URI (here stripping an `/ocsp/` prefix), nginx forwards its
    normalised path, the `//` inside the base64 becomes `/`, and the request no longer decodes.
    (`proxy_pass` without a URI forwards the client's path untouched, so it is not affected.)"""
    b64 = double_slash_request(leaf)
    proxy = f"location /ocsp/ {{ proxy_pass http://127.0.0.1:{site.ocsp_port}/; }}"
    with Nginx(tmp_path / "nginx", proxy).running() as nginx:
        for path in proxy_forms(b64):
            status, _, body = get_through(nginx.port, "/ocsp" + path)
            assert status == 200
            response = ocsp.load_der_ocsp_response(body)
            assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST, path
        # The same paths straight to the responder are fine.
        for path in proxy_forms(b64):
            assert_answered_good(site.ocsp_port, path, leaf)
