"""Known-weak subscriber keys, refused at issuance (BR 6.1.1.3). Pure, but for `load_lists`.

What is refused, each with its own message (`WeakKeyError` names the weakness):
- moduli that Fermat's method factors within 100 rounds (primes too close together; BR 6.1.1.3
  names this test), checked here;
- ROCA (CVE-2017-15361, Infineon's RSALib primes), small prime factors, primes shared with the
  published sets of broken keys, a zero-byte pattern that allows polynomial factoring, a small
  private exponent (Wiener), invalid exponents: the `badkeys` library's checks;
- keys on the fingerprint lists named by `ca.weak_key_lists` (Debian's OpenSSL 0.9.8c-1 to
  0.9.8g-9 keys, BR 6.1.1.3's example, and any list of SPKI SHA-256 sums). No list is shipped:
  the operator installs them (docs/ra.md).

The lists are files of one fingerprint a line ('#' starts a comment):
- 20 hex digits: the `openssl-blacklist` format, the last 20 hex digits of the SHA-1 of
  "Modulus=HEX\\n" as `openssl rsa -modulus` prints it (RSA keys);
- 64 hex digits: the SHA-256 of the DER SubjectPublicKeyInfo (any key type), as
  `shirushi show` and the block list write it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shirushi.asn1.keys import spki_sha256
from shirushi.errors import ConfigError, WeakKeyError

FERMAT_ROUNDS = 100  # BR 6.1.1.3: "Fermat factorization ... within 100 rounds"
# The badkeys checks that are conclusive for a single key with no outside data; their
# "blocklist" check needs downloaded data and is covered by `ca.weak_key_lists` instead.
BADKEYS_CHECKS = {
    "roca": "ROCA (CVE-2017-15361): the modulus has the structure of Infineon RSALib primes",
    "smallfactors": "the modulus has a small prime factor",
    "sharedprimes": "the modulus shares a prime with known broken keys",
    "rsapoly": "the modulus has a zero-byte pattern that allows polynomial factoring",
    "smalld": "the private exponent is small enough for Wiener's attack",
    "rsainvalid": "the public exponent is invalid for the modulus",
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def fermat_factorable(n: int, rounds: int = FERMAT_ROUNDS) -> bool:
    """True when Fermat's method finds p, q with |p - q| small within `rounds` steps (BR 6.1.1.3)."""
    a = math.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(rounds):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            return True
        a += 1
    return False


def debian_fingerprint(n: int) -> str:
    """The `openssl-blacklist` fingerprint of an RSA modulus (what `openssl-vulnkey` looks up)."""
    line = f"Modulus={n:X}\n".encode("ascii")
    return hashlib.sha1(line).hexdigest()[20:]


@dataclasses.dataclass(frozen=True)
class Fingerprints:
    """The listed keys, as read from `ca.weak_key_lists`."""

    debian: frozenset[str] = frozenset()
    spki: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.debian) + len(self.spki)


def parse_list(lines: Iterable[str], where: str) -> Fingerprints:
    """One list file's fingerprints; ConfigError naming `where` and the line for anything else."""
    debian: set[str] = set()
    spki: set[str] = set()
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        if _HEX.match(text) and len(text) == 20:
            debian.add(text.lower())
        elif _HEX.match(text) and len(text) == 64:
            spki.add(text.lower())
        else:
            raise ConfigError(
                f"{where}:{number}: not a weak-key fingerprint (20 hex digits, openssl-blacklist; "
                "or 64, SHA-256 of the SubjectPublicKeyInfo)"
            )
    return Fingerprints(frozenset(debian), frozenset(spki))


def load_lists(paths: Sequence[str]) -> Fingerprints:
    """Read every list named in `ca.weak_key_lists`. Reads files."""
    debian: set[str] = set()
    spki: set[str] = set()
    for path in paths:
        try:
            with Path(path).open(encoding="ascii", errors="replace") as fh:
                found = parse_list(fh, path)
        except OSError as exc:
            raise ConfigError(f"ca.weak_key_lists: cannot read {path}: {exc.strerror}") from None
        debian |= found.debian
        spki |= found.spki
    return Fingerprints(frozenset(debian), frozenset(spki))


def _badkeys(n: int, e: int) -> str | None:
    """The first badkeys finding for this RSA key, as its check name, or None."""
    # Imported here: the keyless responder imports nothing of the CA's key checks.
    from badkeys.checks import checkrsa

    found = checkrsa(n, e=e, checks=list(BADKEYS_CHECKS))
    for name in BADKEYS_CHECKS:
        if name in found:
            return name
    return None


@dataclasses.dataclass(frozen=True)
class WeakKeys:
    """The weak-key check applied to every subscriber key before issuance."""

    lists: Fingerprints = Fingerprints()

    def check(self, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> None:
        """Raise WeakKeyError when the key is known to be weak; return otherwise."""
        digest = spki_sha256(public_key)
        if digest in self.lists.spki:
            raise WeakKeyError("listed", "the key is on a weak-key list (ca.weak_key_lists)", digest)
        if not isinstance(public_key, rsa.RSAPublicKey):
            return  # the known EC weaknesses are list entries; the curve itself was checked (BR 6.1.5)
        numbers = public_key.public_numbers()
        if debian_fingerprint(numbers.n) in self.lists.debian:
            raise WeakKeyError(
                "debian-openssl",
                "the key was made by Debian's broken OpenSSL (CVE-2008-0166) and is on its weak-key list",
                digest,
            )
        if fermat_factorable(numbers.n):
            raise WeakKeyError("fermat", "its primes are so close that Fermat's method factors the modulus", digest)
        finding = _badkeys(numbers.n, numbers.e)
        if finding is not None:
            raise WeakKeyError(finding, BADKEYS_CHECKS[finding], digest)


# The computed checks alone, with no list: what a caller without `ca.weak_key_lists` applies.
COMPUTED = WeakKeys()
