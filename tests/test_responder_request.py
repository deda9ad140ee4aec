"""The pure request decoders: DER OCSPRequest -> CertID or status, GET path -> DER."""

from __future__ import annotations

import base64
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shirushi.responder.request import (
    MALFORMED_REQUEST,
    UNAUTHORIZED,
    CertID,
    decode_get_path,
    parse_request,
    path_prefix,
)
from support.ocsp_pki import (
    ACCEPTABLE_RESPONSES_OID,
    BASIC_OID,
    NONCE_OID,
    SHA1_OID,
    SHA256_OID,
    build_pki,
    der_cert_id,
    der_extension,
    der_request,
    integer,
    octets,
    oid,
    seq,
    tlv,
)

OK = der_request([der_cert_id(0x1234)])


def test_plain_sha1_request() -> None:
    assert parse_request(OK) == CertID("sha1", b"\x01" * 20, b"\x02" * 20, 0x1234)


def test_sha256_request() -> None:
    der = der_request([der_cert_id(7, SHA256_OID, b"\x03" * 32, b"\x04" * 32)])
    assert parse_request(der) == CertID("sha256", b"\x03" * 32, b"\x04" * 32, 7)


def test_sha1_without_null_parameters() -> None:
    der = der_request([seq(seq(oid(SHA1_OID)), octets(b"\x01" * 20), octets(b"\x02" * 20), integer(9))])
    assert parse_request(der) == CertID("sha1", b"\x01" * 20, b"\x02" * 20, 9)


@pytest.mark.oracle
def test_openssl_request_with_nonce(tmp_path: Path) -> None:
    """What `openssl ocsp` sends by default: SHA-1 CertID and a 16-octet nonce (ignored)."""
    pki = build_pki(tmp_path, "http://127.0.0.1:1/")
    leaf = pki.issue_leaf(0xABCDEF)
    subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(tmp_path / "issuing.pem"),
            "-cert",
            str(leaf),
            "-reqout",
            str(tmp_path / "req.der"),
        ],
        check=True,
        capture_output=True,
    )
    result = parse_request((tmp_path / "req.der").read_bytes())
    assert isinstance(result, CertID)
    assert (result.alg, result.serial) == ("sha1", 0xABCDEF)
    assert pki.request_der(0xABCDEF)[-40:] != b""  # sanity: our builder works for the same CA
    expected = parse_request(pki.request_der(0xABCDEF))
    assert result == expected


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(der_request([der_cert_id(1), der_cert_id(2)]), id="two-certids"),
        pytest.param(der_request([]), id="empty-request-list"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30", id="truncated-header"),
        pytest.param(OK[:-1], id="truncated"),
        pytest.param(OK + b"\x00", id="trailing-byte"),
        pytest.param(b"\x30\x80" + OK[2:] + b"\x00\x00", id="ber-indefinite-length"),
        pytest.param(b"not an ocsp request at all", id="text"),
        pytest.param(der_request([der_cert_id(1)], version=1), id="version-v2"),
        pytest.param(der_request([der_cert_id(1)], version=0), id="explicit-default-version"),
        pytest.param(der_request([der_cert_id(0)]), id="serial-zero"),
        pytest.param(der_request([der_cert_id(-5)]), id="serial-negative"),
        pytest.param(der_request([der_cert_id(1 << 159)]), id="serial-21-octets"),
        pytest.param(
            der_request([seq(seq(oid(SHA1_OID), integer(3)), octets(b"1"), octets(b"2"), integer(5))]),
            id="hash-parameters-not-null",
        ),
        pytest.param(
            der_request([seq(seq(oid(SHA1_OID), b"\x05\x00"), octets(b"1"), octets(b"2"), tlv(2, b""))]),
            id="empty-integer",
        ),
        pytest.param(
            der_request([der_cert_id(1)], extensions=[der_extension("1.2.3.4", b"\x05\x00")] * 2),
            id="duplicate-extension",
        ),
        pytest.param(
            der_request([der_cert_id(1)], extensions=[der_extension("1.2.3.4", b"\x05\x00", True)]),
            id="unknown-critical-extension",
        ),
        pytest.param(
            der_request([der_cert_id(1)], extensions=[der_extension(ACCEPTABLE_RESPONSES_OID, b"\x01\x02")]),
            id="garbage-acceptable-responses",
        ),
    ],
)
def test_malformed(der: bytes) -> None:
    assert parse_request(der) == MALFORMED_REQUEST


def test_largest_serial_is_20_octets() -> None:
    largest = (1 << 159) - 1  # 20 content octets in DER, RFC 5280 4.1.2.2
    result = parse_request(der_request([der_cert_id(largest)]))
    assert isinstance(result, CertID) and result.serial == largest


@pytest.mark.parametrize(
    ("size", "ok"),
    [(0, False), (1, True), (15, True), (16, True), (32, True), (33, True), (128, True), (129, False)],
)
def test_nonce_lengths(size: int, ok: bool) -> None:
    """RFC 9654 2.1: Nonce ::= OCTET STRING (SIZE(1..128)); the DER sits inside extnValue."""
    der = der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, octets(b"n" * size))])
    assert isinstance(parse_request(der), CertID) is ok
    if not ok:
        assert parse_request(der) == MALFORMED_REQUEST


def test_nonce_single_wrapped_is_measured_as_is() -> None:
    """Old encoders put the nonce bytes straight into extnValue (pyca/cryptography#6404)."""
    good = der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, b"\xaa" * 16)])
    long = der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, b"\xaa" * 200)])
    assert isinstance(parse_request(good), CertID)
    assert parse_request(long) == MALFORMED_REQUEST


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(
            der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, octets(b"x" * 16), True)]),
            id="critical-nonce",
        ),
        pytest.param(
            der_request([der_cert_id(5)], extensions=[der_extension("1.2.3.4", b"\x05\x00")]),
            id="unknown-non-critical-extension",
        ),
        pytest.param(
            der_request(
                [der_cert_id(5)],
                extensions=[der_extension(ACCEPTABLE_RESPONSES_OID, seq(oid(BASIC_OID)), True)],
            ),
            id="nss-acceptable-responses",
        ),
        pytest.param(
            der_request([der_cert_id(5)], single_extensions=[der_extension(NONCE_OID, octets(b"k" * 8))]),
            id="nonce-in-single-request-extensions",
        ),
        pytest.param(
            der_request([der_cert_id(5)], single_extensions=[der_extension("1.2.3", b"\x05\x00", True)]),
            id="critical-single-request-extension",
        ),
        pytest.param(der_request([der_cert_id(5)], extensions=[]), id="empty-extensions"),
        pytest.param(der_request([der_cert_id(5)], requestor=tlv(0x82, b"client.example")), id="requestor"),
        pytest.param(
            der_request(
                [der_cert_id(5)],
                signature=seq(seq(oid("1.2.840.113549.1.1.11"), b"\x05\x00"), tlv(0x03, b"\x00" + b"s" * 32)),
            ),
            id="signed-request",
        ),
    ],
)
def test_tolerated(der: bytes) -> None:
    result = parse_request(der)
    assert isinstance(result, CertID) and result.serial == 5


@pytest.mark.parametrize(
    "alg_oid",
    ["1.2.840.113549.2.5", "2.16.840.1.101.3.4.2.2", "2.16.840.1.101.3.4.2.3", "1.2.3.4.5"],
    ids=["md5", "sha384", "sha512", "unknown-oid"],
)
def test_unsupported_hash_is_unauthorized(alg_oid: str) -> None:
    assert parse_request(der_request([der_cert_id(5, alg_oid)])) == UNAUTHORIZED


# --- GET paths ------------------------------------------------------------------------------

# Hashes chosen so that the base64 holds '+' and '/', and a length that needs '=' padding.
TRICKY = der_request([der_cert_id(1, name_hash=b"\xfb\xff" * 10, key_hash=b"\xf8" * 20)])
TRICKY_B64 = base64.b64encode(TRICKY).decode()


def test_tricky_vector_has_all_three_characters() -> None:
    assert "+" in TRICKY_B64 and "/" in TRICKY_B64 and "=" in TRICKY_B64


@pytest.mark.parametrize(
    "path",
    [
        "/" + urllib.parse.quote(TRICKY_B64, safe=""),  # RFC 6960 A.1: URL-encoded
        "/" + TRICKY_B64,  # raw
        "//" + TRICKY_B64,  # HAProxy appending '/' to an AIA URL ending in '/'
        "///" + urllib.parse.quote(TRICKY_B64, safe=""),
        "/" + TRICKY_B64.replace("+", "%2b").replace("/", "%2f").replace("=", "%3d"),  # lower-case hex
        "/" + TRICKY_B64.replace("+", " "),  # a form decoder on the way turned '+' into ' '
        "/" + TRICKY_B64.replace("+", "%20"),
        "/" + TRICKY_B64.rstrip("="),  # missing padding
        "/" + base64.urlsafe_b64encode(TRICKY).decode(),  # base64url
        "/" + base64.urlsafe_b64encode(TRICKY).decode().rstrip("="),
        "/" + TRICKY_B64 + "?cache-buster=1",
    ],
)
def test_get_path_variants(path: str) -> None:
    assert decode_get_path(path.encode(), b"") == TRICKY


@pytest.mark.parametrize("path", ["/ocsp/", "/ocsp//", "/ocsp///", "/"])
def test_get_path_prefix(path: str) -> None:
    prefix = path_prefix("/ocsp/")
    assert prefix == b"/ocsp"
    assert decode_get_path((path + TRICKY_B64).encode(), prefix) == TRICKY


def test_prefix_of_root_url_is_empty() -> None:
    assert path_prefix("/") == b"" and path_prefix("") == b""


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/%",
        "/%4",
        "/%zz" + TRICKY_B64,
        "/" + TRICKY_B64 + "A",
        "/" + TRICKY_B64[:-4] + "!!!!",
        "/MA=A",
        "/favicon.ico",
        "/" + TRICKY_B64 + "%00",
    ],
)
def test_get_path_garbage(path: str) -> None:
    decoded = decode_get_path(path.encode(), b"")
    assert decoded is None or parse_request(decoded) == MALFORMED_REQUEST


# --- properties -----------------------------------------------------------------------------


def _mutations() -> st.SearchStrategy[bytes]:
    base = st.sampled_from(
        [
            OK,
            TRICKY,
            der_request([der_cert_id(5)], extensions=[der_extension(NONCE_OID, octets(b"n" * 16))]),
            der_request([der_cert_id(1), der_cert_id(2)]),
        ]
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(base))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
            pos = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[pos] ^= draw(st.integers(1, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
            elif op == "delete" and data:
                del data[pos]
            else:
                del data[pos:]
        return bytes(data)

    return mutate()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _mutations()))
def test_parser_never_raises(der: bytes) -> None:
    result = parse_request(der)
    if isinstance(result, CertID):
        assert result.alg in ("sha1", "sha256")
        assert 0 < result.serial < 1 << 159
    else:
        assert result in (MALFORMED_REQUEST, UNAUTHORIZED)


@settings(max_examples=1500, deadline=None)
@given(
    st.binary(min_size=1, max_size=200),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(1, 3),
)
def test_get_path_round_trip(tail: bytes, quote: bool, urlsafe: bool, unpad: bool, slashes: int) -> None:
    # Every OCSPRequest starts with a SEQUENCE tag, so its base64 starts with 'M', never '/'.
    der = b"\x30" + tail
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(der).decode()
    if unpad:
        text = text.rstrip("=")
    if quote:
        text = urllib.parse.quote(text, safe="")
    assert decode_get_path(("/" * slashes + text).encode(), b"") == der


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_get_path_never_raises(target: bytes) -> None:
    decoded = decode_get_path(b"/" + target, b"/ocsp")
    assert decoded is None or isinstance(decoded, bytes)
