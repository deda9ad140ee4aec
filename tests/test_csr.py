"""CSR rules: proof of possession (policy 3.2.1), key policy (6.1.5, BR 6.1.1.3/6.1.5/6.1.6), names."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from shirushi.ca import MAX_CSR_BYTES
from shirushi.ca import csr as rules
from shirushi.ca.names import parse_name
from shirushi.errors import InputError, PolicyError
from support.pki import SUBJECT, make_csr, make_key


def check(pem: bytes, **kw: object) -> rules.CheckedRequest:
    return rules.check_request(rules.load_csr(pem), **kw)  # type: ignore[arg-type]


def test_good_csr() -> None:
    req = check(make_csr(["www.example.jp", "example.jp"]))
    assert req.dns_names == ["www.example.jp", "example.jp"]
    assert req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.jp"
    assert len(req.spki_sha256) == 64


def test_tampered_csr_fails_proof_of_possession() -> None:
    der = bytearray(rules.load_csr(make_csr()).public_bytes(serialization.Encoding.DER))
    # Flip a byte inside the subject's organisation name: still parses, signature breaks.
    at = der.index(b"Example KK")
    der[at] ^= 0x01
    with pytest.raises(InputError, match="proof of possession"):
        check(bytes(der))


def test_not_a_csr() -> None:
    with pytest.raises(InputError, match="not a certificate signing request"):
        rules.load_csr(b"hello")


def test_oversized_csr() -> None:
    with pytest.raises(InputError, match="at most"):
        rules.load_csr(b"x" * (MAX_CSR_BYTES + 1))


def test_1024_bit_key_refused() -> None:
    with pytest.raises(PolicyError, match="RSA 1024 bits is below the minimum of 2048"):
        check(make_csr(key=make_key(1024)))


def test_ecdsa_key_refused_by_default_naming_the_option() -> None:
    """RSA is the policy's profile; ECDSA is refused unless ca.subscriber_key_types enables it."""
    with pytest.raises(PolicyError) as refused:
        check(make_csr(key=ec.generate_private_key(ec.SECP256R1())))
    assert str(refused.value) == (
        "key refused: ECDSA P-256 subscriber keys are not enabled on this CA (accepted: RSA); "
        "add 'ecdsa-p256' to ca.subscriber_key_types to accept them (BR 6.1.5)"
    )


@pytest.mark.parametrize(("curve", "kind"), [(ec.SECP256R1(), "ecdsa-p256"), (ec.SECP384R1(), "ecdsa-p384")])
def test_ecdsa_keys_accepted_when_enabled(curve: ec.EllipticCurve, kind: str) -> None:
    key = ec.generate_private_key(curve)
    req = check(make_csr(key=key), key_types=("rsa", kind))
    assert isinstance(req.public_key, ec.EllipticCurvePublicKey) and req.public_key.curve.name == curve.name
    # The other curve stays refused.
    other = ec.SECP384R1() if kind == "ecdsa-p256" else ec.SECP256R1()
    with pytest.raises(PolicyError, match="not enabled"):
        check(make_csr(key=ec.generate_private_key(other)), key_types=("rsa", kind))


def test_rsa_refused_when_not_listed() -> None:
    with pytest.raises(PolicyError, match=r"RSA subscriber keys are not enabled.*add 'rsa'"):
        check(make_csr(), key_types=("ecdsa-p256",))


def test_other_curves_and_key_types_refused() -> None:
    every = ("rsa", "ecdsa-p256", "ecdsa-p384")
    with pytest.raises(PolicyError, match="curve secp521r1 is not accepted; only P-256 and P-384"):
        check(make_csr(key=ec.generate_private_key(ec.SECP521R1())), key_types=every)
    with pytest.raises(PolicyError, match="curve secp256k1 is not accepted"):
        check(make_csr(key=ec.generate_private_key(ec.SECP256K1())), key_types=every)
    with pytest.raises(PolicyError, match="Ed25519PublicKey keys are not accepted"):
        check(make_csr(key=ed25519.Ed25519PrivateKey.generate()), key_types=every)


def test_small_exponent_refused() -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(PolicyError, match="public exponent 3"):
        check(make_csr(key=key))


def test_fermat_factorable_modulus_detected() -> None:
    # Two primes close together: p = next prime after 2^1024, q = the next after p.
    p = (1 << 1024) + 643
    q = (1 << 1024) + 1297
    assert rules.fermat_factorable(p * q)
    assert not rules.fermat_factorable(make_key().private_numbers().public_numbers.n)


def test_empty_san_and_no_cn_refused() -> None:
    with pytest.raises(InputError, match="no DNS name"):
        check(make_csr([], subject=SUBJECT))


def test_dns_override_replaces_csr_names() -> None:
    req = check(make_csr(["www.example.jp"]), dns_names=["www.example.jp", "api.example.jp"])
    assert req.dns_names == ["www.example.jp", "api.example.jp"]


@pytest.mark.parametrize(
    "name", ["www.example.jp.", "bad_label.example.jp", "localhost", "-x.example.jp", "192.168.0.1"]
)
def test_bad_dns_names(name: str) -> None:
    with pytest.raises(InputError):
        check(make_csr(["www.example.jp"]), dns_names=[name])


def test_wildcard_refused() -> None:
    with pytest.raises(PolicyError, match="wildcard"):
        check(make_csr(["*.example.jp"], cn="www.example.jp"))


def test_subject_must_have_policy_fields() -> None:
    with pytest.raises(PolicyError, match="subject lacks ST, L"):
        check(make_csr(subject={"C": "JP", "O": "Example KK"}))


def test_subject_override_from_ra() -> None:
    subject = parse_name("C=JP, ST=Osaka, L=Kita-ku, O=Other KK, CN=www.example.jp")
    req = check(make_csr(subject={"C": "JP"}), subject=subject)
    assert req.subject == subject


def test_country_must_be_jp() -> None:
    with pytest.raises(PolicyError, match="C must be JP"):
        check(make_csr(subject={**SUBJECT, "C": "US"}))


def test_cn_must_be_a_san() -> None:
    with pytest.raises(PolicyError, match="not one of the DNS names"):
        check(make_csr(["www.example.jp"], cn="other.example.jp"))
