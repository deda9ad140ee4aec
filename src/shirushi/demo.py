"""`shirushi demo`: the all-in-one main job. Starts `serve`, issues a sample, prints checks.

Idempotent: `init` creates only what is missing; each run issues one more sample certificate
into `{data_dir}/demo/`. Then it keeps serving until interrupted (or stops at once with
`--no-serve`). Does I/O: processes, files, network on loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from shirushi.backend import Backend
from shirushi.ca.hierarchy import load_hierarchy, pem
from shirushi.config import Settings
from shirushi.config_values import parse_listen
from shirushi.errors import ServiceError, StateError
from shirushi.layout import Layout
from shirushi.serials import serial_text

SAMPLE_HOST = "www.example.jp"


def wait_for_port(listen: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    host, port = parse_listen(listen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"`shirushi serve` exited with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise ServiceError(f"nothing listens on {listen} after {timeout:.0f} s")


def sample_request(directory: Path) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "sample.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Chiyoda-ku"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shirushi Demo Subscriber"),
            x509.NameAttribute(NameOID.COMMON_NAME, SAMPLE_HOST),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SAMPLE_HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    data = csr.public_bytes(serialization.Encoding.PEM)
    (directory / "sample.csr").write_bytes(data)
    return data


def _lock_is_held(path: Path) -> bool:
    """Whether another process holds the flock on `path` (absent = nobody)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


@contextlib.contextmanager
def demo_lock(data_dir: Path) -> Iterator[None]:
    """One demo per data directory, and none next to a running `serve`: refuse before `init`
    or the sample files touch anything (they would overwrite the running demo's sample)."""
    if _lock_is_held(Layout(data_dir).serve_lock):
        raise StateError(f"another `shirushi serve` (or demo) is running on {data_dir}; stop it first")
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(Layout(data_dir).demo_lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another `shirushi demo` is running on {data_dir}; stop it first") from None
        yield


def demo(settings: Settings, config_path: str | None, *, serve_after: bool = True) -> int:
    with demo_lock(settings.data_path):
        return _demo(settings, config_path, serve_after=serve_after)


def _demo(settings: Settings, config_path: str | None, *, serve_after: bool) -> int:
    backend = Backend(settings)
    try:
        for line in backend.init():
            print(line)
    finally:
        backend.close()
    args = [sys.executable, "-m", "shirushi"] + (["--config", config_path] if config_path else []) + ["serve"]
    server = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(settings.repository.listen, 120, server)
        wait_for_port(settings.ocsp.listen, 120, server)
        directory = settings.layout.demo
        backend = Backend(settings)
        try:
            issued = backend.authority.issue(sample_request(directory))
        finally:
            backend.close()
        hierarchy = load_hierarchy(settings)
        (directory / "sample.pem").write_text(pem(issued.certificate))
        (directory / "chain.pem").write_text(pem(issued.certificate) + pem(hierarchy.issuing))
        (directory / "issuing-ca.pem").write_text(pem(hierarchy.issuing))
        (directory / "root.pem").write_text(pem(hierarchy.root))
        for warning in issued.warnings:
            print(f"warning: {warning}")
        print_checks(settings, directory, serial_text(issued.record.serial), config_path)
        print_load_test(settings, directory, issued.certificate, hierarchy.issuing)
        if not serve_after:
            return 0
        print("\nServing; press Ctrl-C to stop.", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def print_checks(settings: Settings, directory: Path, serial: str, config_path: str | None) -> None:
    d = shlex.quote(str(directory))
    repo = settings.repository.url.rstrip("/")
    ocsp = settings.ocsp.url
    # Pasteable from any directory: absolute paths, and the data directory spelled out.
    conf = f" --config {shlex.quote(str(Path(config_path).resolve()))}" if config_path else ""
    exe = Path(sys.executable).parent / "shirushi"
    metrics = ""
    if settings.metrics.listen:
        base = f"http://{settings.metrics.listen}"
        metrics = f"""
  # readiness and the Prometheus metrics (requests by outcome and status, CRL age, presign lag)
  curl -s {base}/readyz
  curl -s {base}/metrics | grep '^shirushi_ocsp_requests_total'
"""
    cli = f"SHIRUSHI_DATA_DIR={shlex.quote(str(settings.data_path))} {exe if exe.exists() else 'shirushi'}{conf}"
    print(
        f"""
Issued a sample certificate for {SAMPLE_HOST}, serial {serial}, into {directory}/.
Check it with stock tools (paste these):

  # the chain verifies as a TLS server certificate
  openssl verify -x509_strict -purpose sslserver -CAfile {d}/root.pem -untrusted {d}/issuing-ca.pem {d}/sample.pem

  # OCSP over POST: expect "Response verify OK" and "good"
  openssl ocsp -issuer {d}/issuing-ca.pem -cert {d}/sample.pem -url {ocsp} -CAfile {d}/root.pem -no_nonce

  # OCSP over GET with curl
  openssl ocsp -issuer {d}/issuing-ca.pem -cert {d}/sample.pem -no_nonce -reqout {d}/req.der
  curl -s -o {d}/resp.der "{ocsp}$(base64 -w0 {d}/req.der)"
  openssl ocsp -respin {d}/resp.der -resp_text -noverify | grep 'Cert Status'

  # the CRL from the repository, signed by the issuing CA
  curl -s -o {d}/ca.crl {repo}/issuing-ca.crl
  openssl crl -inform DER -in {d}/ca.crl -CAfile {d}/issuing-ca.pem -noout -text | head -20

  # revoke it, then ask again: "revoked"
  {cli} revoke {serial} --reason keyCompromise
  openssl ocsp -issuer {d}/issuing-ca.pem -cert {d}/sample.pem -url {ocsp} -CAfile {d}/root.pem -no_nonce
{metrics}""",
        flush=True,
    )


# In a source checkout (the README's quick start) the locustfile sits beside the package.
LOCUSTFILE = Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"


def print_load_test(settings: Settings, directory: Path, leaf: x509.Certificate, issuer: x509.Certificate) -> None:
    """Print a locust command that works as pasted: its request file is written here."""
    if not LOCUSTFILE.exists():
        return
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    req_path = directory / "sample-req.der"
    req_path.write_bytes(request.public_bytes(serialization.Encoding.DER))
    locust = Path(sys.executable).parent / "locust"
    host = shlex.quote(settings.ocsp.url.rstrip("/"))
    note = "" if locust.exists() else " (not installed here: run `scripts/setup --dev` first)"
    command = (
        f"{shlex.quote(str(locust))} -f {shlex.quote(str(LOCUSTFILE))} --headless -u 20 -r 10 -t 20s"
        f" --host {host} --ocsp-requests {shlex.quote(str(req_path))}"
    )
    print(f"  # load-test the responder for 20 s with locust{note}\n  {command}\n", flush=True)
