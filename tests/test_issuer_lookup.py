"""Finding a leaf's issuer for `shirushi staple`: the local CA, or the AIA caIssuers URL.

A real HTTP server on 127.0.0.1 plays the CA repository, serving the issuer as DER, PEM and
PKCS#7, and misbehaving: too large, garbage, a look-alike CA (same name, other key), a peer that
drips bytes, a redirect to https, a 404.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from shirushi import issuer_lookup
from shirushi.errors import InputError, ServiceError

NOW = dt.datetime.now(dt.UTC)
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lookup Test CA")])


def make_ca(key: rsa.RSAPrivateKey) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


CA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CA = make_ca(CA_KEY)
# Same subject name, another key: must not be taken for the issuer.
LOOKALIKE = make_ca(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def make_leaf(*urls: str) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.jp")]))
        .issuer_name(CA_NAME)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=10))
    )
    if urls:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
                    for u in urls
                ]
            ),
            critical=False,
        )
    return builder.sign(CA_KEY, hashes.SHA256())


DER = serialization.Encoding.DER
BODIES = {
    "/ca.der": CA.public_bytes(DER),
    "/ca.pem": LOOKALIKE.public_bytes(serialization.Encoding.PEM) + CA.public_bytes(serialization.Encoding.PEM),
    "/ca.p7c": pkcs7.serialize_certificates([CA], DER),
    "/lookalike.der": LOOKALIKE.public_bytes(DER),
    "/garbage": b"<html>not a certificate</html>",
    "/big": b"\x30" * (issuer_lookup.MAX_ISSUER_BYTES + 1),
}


class Repository(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in BODIES:
            body = BODIES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-cert")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/big-chunked":  # no Content-Length: the cap applies while reading
            self.send_response(200)
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"\x30" * 8192)
        elif self.path == "/drip":  # never finishes, one byte at a time
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"0")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        elif self.path == "/to-https":
            self.send_response(302)
            self.send_header("Location", "https://127.0.0.1:1/ca.der")
            self.end_headers()
        elif self.path == "/to-der":
            self.send_response(301)
            self.send_header("Location", "/ca.der")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def repo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Repository)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/ca.der", "/ca.pem", "/ca.p7c", "/to-der"])
def test_issuer_fetched_as_der_pem_or_pkcs7(repo: str, path: str) -> None:
    leaf = make_leaf(repo + path)
    assert issuer_lookup.find_issuer(leaf, "leaf.pem", local=[]) == CA


def test_local_ca_first_without_network() -> None:
    leaf = make_leaf("http://127.0.0.1:1/unreachable.der")
    assert issuer_lookup.find_issuer(leaf, "leaf.pem", local=[LOOKALIKE, CA]) == CA


def test_a_lookalike_is_never_the_issuer(repo: str) -> None:
    assert not issuer_lookup.is_issuer(make_leaf(), LOOKALIKE)
    with pytest.raises(ServiceError, match="holds no certificate that issued this one"):
        issuer_lookup.find_issuer(make_leaf(repo + "/lookalike.der"), "leaf.pem", local=[LOOKALIKE])


def test_later_url_used_when_the_first_fails(repo: str) -> None:
    leaf = make_leaf(repo + "/missing", repo + "/ca.der")
    assert issuer_lookup.find_issuer(leaf, "leaf.pem", local=[]) == CA


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/garbage", "sent no PEM, DER or PKCS#7 certificate"),
        ("/big", f"sent {issuer_lookup.MAX_ISSUER_BYTES + 1} bytes; at most {issuer_lookup.MAX_ISSUER_BYTES}"),
        ("/big-chunked", f"sent more than {issuer_lookup.MAX_ISSUER_BYTES} bytes"),
        ("/missing", "answered HTTP 404"),
        ("/to-https", "redirects to https://127.0.0.1:1/ca.der, which is not http://"),
    ],
)
def test_bad_answers_are_one_clear_error(repo: str, url: str, message: str) -> None:
    with pytest.raises(ServiceError, match=message) as failed:
        issuer_lookup.find_issuer(make_leaf(repo + url), "leaf.pem", local=[])
    assert "\n" not in str(failed.value)


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(ServiceError, match=r"https://ca.example/ca.der is not http://"):
        issuer_lookup.find_issuer(make_leaf("https://ca.example/ca.der"), "leaf.pem", local=[])
    with pytest.raises(ServiceError, match="is not http://"):
        issuer_lookup.download("file:///etc/passwd")


def test_a_dripping_peer_meets_the_deadline(repo: str) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceError, match="took longer than 1 s"):
        issuer_lookup.find_issuer(make_leaf(repo + "/drip"), "leaf.pem", local=[], timeout=1.0)
    assert time.monotonic() - started < 10  # generous: the point is that it does not hang


def test_nothing_to_go_on_names_the_file() -> None:
    with pytest.raises(InputError) as refused:
        issuer_lookup.find_issuer(make_leaf(), "site/leaf.pem", local=[LOOKALIKE])
    assert str(refused.value) == (
        "site/leaf.pem holds no issuer certificate, the local CA did not issue it and it names no caIssuers "
        "URL: give --issuer or a chain file"
    )
