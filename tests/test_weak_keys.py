"""Known-weak keys refused, each with its own message (BR 6.1.1.3): the check and the CSR rules.

The keys are real, made here (tests/support/weak_keys.py), and the ROCA published test vector is
roca-detect's; a good key from OpenSSL's generator passes every check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shirushi import config
from shirushi.asn1.keys import spki_sha256
from shirushi.ca import csr as rules
from shirushi.ca import weak_keys
from shirushi.errors import ConfigError, WeakKeyError
from support.pki import make_csr, make_key
from support.weak_keys import ROCA_VECTOR, fermat_close_key, roca_key, small_factor_key


def check_csr(key: rsa.RSAPrivateKey, checker: weak_keys.WeakKeys = weak_keys.COMPUTED) -> rules.CheckedRequest:
    return rules.check_request(rules.load_csr(make_csr(key=key)), weak_keys=checker)


def weakness(key: rsa.RSAPrivateKey, checker: weak_keys.WeakKeys = weak_keys.COMPUTED) -> WeakKeyError:
    with pytest.raises(WeakKeyError) as refused:
        check_csr(key, checker)
    assert refused.value.spki_sha256 == spki_sha256(key.public_key())
    return refused.value


def test_good_key_passes() -> None:
    key = make_key()
    weak_keys.WeakKeys().check(key.public_key())
    assert check_csr(key).spki_sha256 == spki_sha256(key.public_key())


def test_fermat_close_primes_refused_with_their_own_message() -> None:
    refused = weakness(fermat_close_key())
    assert refused.weakness == "fermat"
    assert str(refused) == (
        "key refused: weak key (fermat): its primes are so close that Fermat's method factors the modulus (BR 6.1.1.3)"
    )
    assert refused.code == "weak_key" and refused.exit_code == 3 and refused.http_status == 422


def test_roca_published_vector_detected() -> None:
    with pytest.raises(WeakKeyError, match=r"weak key \(roca\): ROCA \(CVE-2017-15361\)"):
        weak_keys.WeakKeys().check(rsa.RSAPublicNumbers(65537, ROCA_VECTOR).public_key())


def test_roca_shaped_key_refused() -> None:
    assert weakness(roca_key()).weakness == "roca"


def test_small_factor_refused() -> None:
    refused = weakness(small_factor_key())
    assert refused.weakness == "smallfactors"
    assert "small prime factor" in str(refused)


def test_debian_list_refuses_a_listed_modulus(tmp_path: Path) -> None:
    key = make_key()
    listed = tmp_path / "blacklist.RSA-2048"
    listed.write_text(
        f"# openssl-blacklist format\n{weak_keys.debian_fingerprint(key.public_key().public_numbers().n)}\n"
    )
    checker = weak_keys.WeakKeys(weak_keys.load_lists([str(listed)]))
    assert weakness(key, checker).weakness == "debian-openssl"
    check_csr(make_key(), checker)  # an unlisted key still passes


def test_debian_fingerprint_matches_openssl_vulnkey_format() -> None:
    # openssl-vulnkey: SHA-1 of "Modulus=<upper-case hex>\n" as `openssl rsa -modulus` prints it,
    # last 20 hex digits. A small modulus makes the input easy to see.
    import hashlib

    assert weak_keys.debian_fingerprint(0xABCDEF) == hashlib.sha1(b"Modulus=ABCDEF\n").hexdigest()[20:]


def test_spki_list_refuses_any_key_type(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    listed = tmp_path / "spki.txt"
    listed.write_text(f"{spki_sha256(ec_key.public_key()).upper()}  # a leaked key\n\n")
    checker = weak_keys.WeakKeys(weak_keys.load_lists([str(listed)]))
    with pytest.raises(WeakKeyError, match=r"weak key \(listed\)"):
        checker.check(ec_key.public_key())
    checker.check(ec.generate_private_key(ec.SECP256R1()).public_key())


def test_bad_list_file_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "list.txt"
    bad.write_text("0123456789abcdef0123\nnot-a-fingerprint\n")
    with pytest.raises(ConfigError, match=r"list.txt:2: not a weak-key fingerprint"):
        weak_keys.load_lists([str(bad)])
    with pytest.raises(ConfigError, match="cannot read"):
        weak_keys.load_lists([str(tmp_path / "missing")])


def test_config_key_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "shirushi.toml"
    toml.write_text('[ca]\nweak_key_lists = ["lists/blacklist.RSA-2048", "/abs/spki.txt"]\n')
    settings = config.load(toml, environ={})
    assert settings.ca.weak_key_lists == (str(tmp_path / "lists/blacklist.RSA-2048"), "/abs/spki.txt")
    assert config.load(None, environ={}).ca.weak_key_lists == ()
