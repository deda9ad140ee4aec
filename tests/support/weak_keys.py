"""Real weak RSA keys, made in the test: private keys from chosen primes (BR 6.1.1.3 cases).

- `fermat_close_key`: two consecutive primes, which Fermat's method splits in one round;
- `roca_key`: both primes of the form k * M + (65537^a mod M), the structure of Infineon
  RSALib's primes (CVE-2017-15361), M the primorial the ROCA paper gives for 2048-bit keys;
- `small_factor_key`: a 2048-bit modulus with the prime 65519 as a factor.
Each is a complete private key, so a CSR signed with it passes proof of possession.
"""

from __future__ import annotations

import random

from cryptography.hazmat.primitives.asymmetric import rsa

E = 65537
# roca-detect's published positive sample mod03.txt (2048 bits), a modulus from a vulnerable token.
ROCA_VECTOR = int(
    "9dcd7420e420c270a68060eb8b5aa7457a9f6648f86fafed2775cc1f79ae962f1e63f1b9e51c55f9ea6fdc7332e9b0058c9ff2eb1f"
    "c89855029cf6aafe21e689feb38ac9ffb12f1ce371bb5d0e9aae64161abce74b4244bf68f1edb4411f756a097c8929c14740245ea35"
    "5f8332d1aa36bb50c7dcb4505da8de02e4e53d38f8df06097da7524df0df93db48eac8cc4af2d3a16257eb2b2adca6ba464e5974fa9"
    "2550d31b1babf161e7692d00b86e3dd886ecab4abfbe1a8f8cc263ff4af55cdb45f4249a5193925f5e983d762f0b6800943eb0267b0"
    "8f42ed311ce1f5c86eacbc8ce4d3cb7a2fee1ef5641423a1cf4114e5ecf50034a60a412523af9e6f4aa11",
    16,
)


def is_probable_prime(n: int, rounds: int = 32) -> bool:
    """Miller-Rabin with random bases."""
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        x = pow(random.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    n += 1 if n % 2 == 0 else 2  # the next odd number
    while not (is_probable_prime(n) and (n - 1) % E):
        n += 2
    return n


def key_from_primes(p: int, q: int) -> rsa.RSAPrivateKey:
    d = pow(E, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(E, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def fermat_close_key() -> rsa.RSAPrivateKey:
    p = next_prime(random.getrandbits(1024) | (3 << 1022))
    return key_from_primes(p, next_prime(p))


def _primorial(count: int) -> int:
    product, found, n = 1, 0, 2
    while found < count:
        if is_probable_prime(n):
            product *= n
            found += 1
        n += 1
    return product


def roca_prime(m: int, bits: int) -> int:
    while True:
        k = random.getrandbits(bits - m.bit_length()) | (1 << (bits - m.bit_length() - 1))
        p = k * m + pow(E, random.getrandbits(64), m)
        if p.bit_length() == bits and (p - 1) % E and is_probable_prime(p):
            return p


def roca_key() -> rsa.RSAPrivateKey:
    m = _primorial(126)  # ROCA paper, table 1: keys of 1984-3936 bits
    while True:
        p, q = roca_prime(m, 1024), roca_prime(m, 1024)
        if (p * q).bit_length() == 2048:
            return key_from_primes(p, q)


def small_factor_key() -> rsa.RSAPrivateKey:
    p = 65519  # the largest prime under 2^16: a small factor badkeys finds by GCD
    while True:
        q = next_prime(random.getrandbits(2032) | (1 << 2031))
        if (p * q).bit_length() == 2048:
            return key_from_primes(p, q)
