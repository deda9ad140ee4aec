"""Responder test helpers: a small PKI, presigned responses in Redis, server processes, raw HTTP.

root -> issuing CA -> { delegated OCSP signer (EKU OCSPSigning, ocsp-nocheck), leaf certificates
with an AIA OCSP URL }. Responses are built with `shirushi.asn1.ocsp.build_response` exactly as the
presigner does, and stored as `records.make_record(...).pack()` with a TTL of nextUpdate - now,
followed by a publish on the invalidation channel.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import redis
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shirushi.asn1.keys import IssuerId, issuer_id
from shirushi.asn1.ocsp import IssuerHashes, Status, build_response
from shirushi.cache import records
from shirushi.config import Settings
from shirushi.config_values import parse_listen
from shirushi.responder.issuers import issuers_path, load_issuers
from shirushi.responder.routing import Options
from shirushi.responder.worker import serve
from shirushi.signing.software import SoftwareSigner

UTC = dt.UTC


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shirushi Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ku(**flags: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass
class PKI:
    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: rsa.RSAPrivateKey
    signer_cert: x509.Certificate
    signer: SoftwareSigner
    ocsp_url: str
    directory: Path

    @property
    def issuer_id(self) -> IssuerId:
        return issuer_id(self.issuing)

    def issue_leaf(self, serial: int, name: str = "leaf.example.jp") -> Path:
        """A TLS server certificate with `serial`, written as leaf-<hex>.pem."""
        key = _key()
        now = dt.datetime.now(UTC).replace(microsecond=0)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.issuing.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_ku(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(self.ocsp_url),
                        )
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key()),
                critical=False,
            )
            .sign(self.issuing_key, hashes.SHA256())
        )
        path = self.directory / f"leaf-{serial:x}.pem"
        path.write_bytes(pem(cert))
        return path

    def response(
        self,
        serial: int,
        alg: str = "sha1",
        revoked_at: dt.datetime | None = None,
        reason: str | None = None,
        this_update: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(hours=96),
    ) -> tuple[bytes, dt.datetime, dt.datetime]:
        """A signed DER OCSPResponse for `serial`, as the presigner would build it."""
        this_update = this_update or dt.datetime.now(UTC).replace(microsecond=0)
        next_update = this_update + validity
        der = build_response(
            issuer=IssuerHashes.of(self.issuing, alg),
            serial=serial,
            status=Status(revoked_at, reason),
            this_update=this_update,
            next_update=next_update,
            produced_at=this_update,
            signer_cert=self.signer_cert,
            signer=self.signer,
        )
        return der, this_update, next_update

    def store(
        self,
        client: redis.Redis,
        serial: int,
        *,
        revoked_at: dt.datetime | None = None,
        reason: str | None = None,
        algs: tuple[str, ...] = ("sha1", "sha256"),
        validity: dt.timedelta = dt.timedelta(hours=96),
        refresh_in: dt.timedelta = dt.timedelta(hours=24),
        publish: bool = True,
    ) -> dict[str, records.Record]:
        """Sign and store the responses for `serial`; returns the records by algorithm."""
        out = {}
        for alg in algs:
            der, this_update, next_update = self.response(serial, alg, revoked_at, reason, validity=validity)
            record = records.make_record(
                der,
                int(this_update.timestamp()),
                int(next_update.timestamp()),
                int((this_update + refresh_in).timestamp()),
            )
            key = records.response_key(self.issuer_id, alg, serial)
            ttl = max(1, int((next_update - dt.datetime.now(UTC)).total_seconds()))
            client.set(key, record.pack(), ex=ttl)
            if publish:
                client.publish(records.INVALIDATE_CHANNEL, key)
            out[alg] = record
        return out

    def mark_complete(self, client: redis.Redis) -> None:
        client.set(records.complete_key(self.issuer_id), b"1")

    def request_der(self, serial: int, alg: str = "sha1", nonce: bytes | None = None) -> bytes:
        """A DER OCSPRequest for `serial` under the issuing CA (what `openssl ocsp` sends)."""
        issuer = IssuerHashes.of(self.issuing, alg)
        algorithm = hashes.SHA1() if alg == "sha1" else hashes.SHA256()
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            issuer.name_hash, issuer.key_hash, serial, algorithm
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.build().public_bytes(serialization.Encoding.DER)


def get_path(der: bytes, quote: bool = True) -> str:
    """The GET path of RFC 6960 A.1: URL-encoded base64 of the DER (or raw base64)."""
    text = base64.b64encode(der).decode()
    return "/" + (urllib.parse.quote(text, safe="") if quote else text)


def build_pki(directory: Path, ocsp_url: str) -> PKI:
    """Create the PKI and write root.pem, issuing.pem, signer.pem and issuers.pem (the bundle)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    root_key, issuing_key, signer_key = _key(), _key(), _key()
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Shirushi Test Root"))
        .issuer_name(_name("Shirushi Test Root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    issuing = (
        x509.CertificateBuilder()
        .subject_name(_name("Shirushi Test Issuing CA"))
        .issuer_name(root.subject)
        .public_key(issuing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ku(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    signer_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Shirushi Test OCSP Responder"))
        .issuer_name(issuing.subject)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ku(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False)
        .sign(issuing_key, hashes.SHA256())
    )
    (directory / "root.pem").write_bytes(pem(root))
    (directory / "issuing.pem").write_bytes(pem(issuing))
    (directory / "signer.pem").write_bytes(pem(signer_cert))
    (directory / "issuers.pem").write_bytes(pem(issuing))
    return PKI(
        root=root,
        issuing=issuing,
        issuing_key=issuing_key,
        signer_cert=signer_cert,
        signer=SoftwareSigner(signer_key, "test:ocsp-signer"),
        ocsp_url=ocsp_url,
        directory=directory,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ResponderProcess:
    """`python -m shirushi.responder` in a subprocess, configured through the environment."""

    def __init__(self, directory: Path, settings: dict[str, str]) -> None:
        self.directory = directory
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
        env.update(
            {
                "SHIRUSHI_DATA_DIR": str(directory / "data"),
                "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{free_port()}",
                "SHIRUSHI_OCSP__WORKERS": "1",
                "SHIRUSHI_METRICS__LISTEN": "",
            }
        )
        env.update(settings)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.log = directory / "responder.log"

    def start(self, timeout: float = 20.0) -> ResponderProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shirushi.responder"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                self.stop()
                raise RuntimeError(f"responder did not start:\n{self.log.read_text()}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                code = self.stop()
                raise RuntimeError(f"responder exited with {code}:\n{self.log.read_text()}")
            line += chunk
        match = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait; the exit status (SIGKILL and -9 if it does not stop in time)."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> ResponderProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisProcess:
    """A private redis-server on a unix socket, for tests that stop or freeze it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sock = directory / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.sock),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test froze it
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_exchange(port: int, data: bytes, timeout: float = 5.0, half_close: bool = True) -> bytes:
    """Send raw bytes to 127.0.0.1:port and read until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def split_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse a stream of HTTP/1.1 responses (Content-Length framed) into (status, headers, body)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError(f"incomplete response: {data[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0")) if status not in (100, 304) else 0
        body, data = rest[:length], rest[length:]
        if status == 100:
            continue
        out.append((status, headers, body))
    return out


def ocsp_status(body: bytes) -> str:
    """ "successful/good", "successful/revoked" or the error status name, from a DER body."""
    response = ocsp.load_der_ocsp_response(body)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return response.response_status.name
    return "SUCCESSFUL/" + response.certificate_status.name


# --- a tiny DER writer, for requests that pyca's builder refuses to make ---------------------

SHA1_OID = "1.3.14.3.2.26"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
NONCE_OID = "1.3.6.1.5.5.7.48.1.2"
ACCEPTABLE_RESPONSES_OID = "1.3.6.1.5.5.7.48.1.4"
BASIC_OID = "1.3.6.1.5.5.7.48.1.1"


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def octets(value: bytes) -> bytes:
    return tlv(0x04, value)


def integer(value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(0x02, value.to_bytes(size, "big", signed=True))


def oid(dotted: str) -> bytes:
    arcs = [int(x) for x in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        enc = [arc & 0x7F]
        arc >>= 7
        while arc:
            enc.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(enc))
    return tlv(0x06, bytes(out))


NULL = b"\x05\x00"
TRUE = b"\x01\x01\xff"


def der_cert_id(
    serial: int, alg_oid: str = SHA1_OID, name_hash: bytes = b"\x01" * 20, key_hash: bytes = b"\x02" * 20
) -> bytes:
    return seq(seq(oid(alg_oid), NULL), octets(name_hash), octets(key_hash), integer(serial))


def der_extension(ext_oid: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(ext_oid), TRUE if critical else b"", octets(value))


def der_request(
    cert_ids: list[bytes],
    extensions: list[bytes] | None = None,
    single_extensions: list[bytes] | None = None,
    requestor: bytes | None = None,
    signature: bytes | None = None,
    version: int | None = None,
) -> bytes:
    """OCSPRequest (RFC 6960 4.1.1) around the given CertIDs."""
    singles = [seq(c, tlv(0xA0, seq(*single_extensions)) if single_extensions is not None else b"") for c in cert_ids]
    tbs = b"".join(
        (
            tlv(0xA0, integer(version)) if version is not None else b"",
            tlv(0xA1, requestor) if requestor is not None else b"",
            seq(*singles),
            tlv(0xA2, seq(*extensions)) if extensions is not None else b"",
        )
    )
    return seq(seq(tbs), tlv(0xA0, signature) if signature is not None else b"")


class ThreadedResponder:
    """One responder worker (`worker.serve`) on its own event loop in a thread.

    For tests that need `Options` other than the defaults (short timeouts, no L1); the process
    tests cover the supervisor and the command line.
    """

    def __init__(self, settings: Settings, options: Options) -> None:
        self.settings = settings
        self.options = options
        self.port = 0
        self._ready = threading.Event()
        self._loop = uvloop.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        issuers = load_issuers(issuers_path(self.settings))

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        _, port = parse_listen(self.settings.ocsp.listen)
        await serve(self.settings, issuers, self.options, port, ready, self._stop)

    def __enter__(self) -> ThreadedResponder:
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"responder did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        assert stop is not None
        self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error
