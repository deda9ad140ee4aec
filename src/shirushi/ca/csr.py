"""Certificate signing requests: load, verify, and apply the key and name policy. Pure.

- Proof of possession: the CSR's own signature must verify (policy 3.2.1).
- Keys: the types listed in `ca.subscriber_key_types` (RSA by default, the policy's profile).
  RSA: modulus >= 2048 bits and a multiple of 8; odd public exponent 2^16+1 .. 2^256-1 (policy
  6.1.5, BR 6.1.5/6.1.6). ECDSA (when enabled): named curves P-256 and P-384 only (BR 6.1.5).
  Known-weak keys (Fermat-close primes, ROCA, Debian's, ...) are refused by `weak_keys` (BR
  6.1.1.3). Keys reported compromised are refused by the caller, which owns the block list.
- Names: subject C, ST, L, O required, OU optional, CN = a host name from the SAN list
  (policy 3.1.1, BR 7.1.2.7.4 for OV); SAN dNSNames are LDH host names (BR 7.1.2.7.12).
"""

from __future__ import annotations

import dataclasses
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shirushi.asn1.keys import spki_sha256
from shirushi.ca import MAX_CSR_BYTES, names
from shirushi.ca.weak_keys import COMPUTED, WeakKeys
from shirushi.ca.weak_keys import fermat_factorable as fermat_factorable
from shirushi.errors import InputError, PolicyError

MIN_RSA_BITS = 2048

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

SubscriberKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# BR 6.1.5: the ECDSA curves a subscriber key may use, by the name `ca.subscriber_key_types` gives.
EC_CURVES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}
_SHOWN = {"rsa": "RSA", "ecdsa-p256": "ECDSA P-256", "ecdsa-p384": "ECDSA P-384"}


@dataclasses.dataclass(frozen=True)
class CheckedRequest:
    """What issuance may use from a CSR once every check passed."""

    subject: x509.Name
    dns_names: list[str]
    public_key: SubscriberKey
    spki_sha256: str


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM (or DER) CSR; InputError with one line when it is not one."""
    if len(data) > MAX_CSR_BYTES:
        raise InputError(f"CSR is {len(data)} bytes; at most {MAX_CSR_BYTES} are accepted")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise InputError("not a certificate signing request (expected PEM 'CERTIFICATE REQUEST' or DER)") from None


def _not_enabled(kind: str, allowed: tuple[str, ...]) -> PolicyError:
    return PolicyError(
        f"key refused: {_SHOWN[kind]} subscriber keys are not enabled on this CA (accepted: "
        f"{', '.join(_SHOWN[k] for k in allowed)}); add {kind!r} to ca.subscriber_key_types to accept them (BR 6.1.5)"
    )


def check_key(public_key: object, allowed: tuple[str, ...] = ("rsa",)) -> SubscriberKey:
    """The key if its type is enabled in `allowed` (ca.subscriber_key_types) and it is sound."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = EC_CURVES.get(public_key.curve.name)
        if kind is None:
            raise PolicyError(
                f"key refused: ECDSA curve {public_key.curve.name} is not accepted; only P-256 and P-384 (BR 6.1.5)"
            )
        if kind not in allowed:
            raise _not_enabled(kind, allowed)
        # The point was checked to lie on the curve when pyca decoded it; both curves have
        # cofactor 1, so that is the full public key validation of BR 6.1.6.
        return public_key
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise PolicyError(
            f"key refused: {type(public_key).__name__.removeprefix('_')} keys are not accepted; this CA accepts "
            f"{', '.join(_SHOWN[k] for k in allowed)} (ca.subscriber_key_types, BR 6.1.5)"
        )
    if "rsa" not in allowed:
        raise _not_enabled("rsa", allowed)
    numbers = public_key.public_numbers()
    bits = public_key.key_size
    if bits < MIN_RSA_BITS:
        raise PolicyError(f"key refused: RSA {bits} bits is below the minimum of {MIN_RSA_BITS} (policy 6.1.5)")
    if bits % 8:
        raise PolicyError(f"key refused: RSA modulus of {bits} bits is not a multiple of 8 (BR 6.1.5)")
    e = numbers.e
    if e % 2 == 0 or not (1 << 16) < e < (1 << 256):
        raise PolicyError(f"key refused: RSA public exponent {e} must be odd and in 2^16+1..2^256-1 (BR 6.1.6)")
    return public_key


def normalise_dns_name(name: str) -> str:
    """Lower-case LDH host name check (BR 7.1.2.7.12); raises InputError naming the problem."""
    host = name.strip().lower()
    if host.endswith("."):
        raise InputError(f"DNS name {name!r}: no trailing dot allowed (BR 7.1.2.7.12)")
    labels = host.split(".")
    if host.startswith("*."):
        raise PolicyError(f"DNS name {name!r}: wildcard certificates are not offered by this CA")
    if len(labels) < 2 or len(host) > 253:
        raise InputError(f"DNS name {name!r} is not a fully qualified host name")
    for label in labels:
        if not _LABEL.match(label):
            raise InputError(f"DNS name {name!r}: label {label!r} is not a valid LDH label")
    if labels[-1].isdigit():
        raise InputError(f"DNS name {name!r} looks like an IP address; only host names are accepted")
    return host


def _csr_dns_names(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        raise InputError("the CSR's subjectAltName extension cannot be decoded") from None
    if any(not isinstance(n, x509.DNSName) for n in san):
        raise PolicyError("the CSR asks for subjectAltName entries other than DNS names; only dNSName is offered")
    return san.get_values_for_type(x509.DNSName)


def check_request(
    csr: x509.CertificateSigningRequest,
    *,
    dns_names: list[str] | None = None,
    subject: x509.Name | None = None,
    key_types: tuple[str, ...] = ("rsa",),
    profile: str = "ov",
    weak_keys: WeakKeys = COMPUTED,
) -> CheckedRequest:
    """Apply every CSR rule; `dns_names`/`subject` (from the RA) override the CSR's; `key_types`
    is `ca.subscriber_key_types`; `weak_keys` holds `ca.weak_key_lists` (without them, the
    computed checks still apply)."""
    if not csr.is_signature_valid:
        raise InputError("CSR signature does not verify: proof of possession failed (policy 3.2.1)")
    try:
        public_key = check_key(csr.public_key(), key_types)
    except ValueError:
        raise InputError("the CSR's public key cannot be decoded") from None
    weak_keys.check(public_key)  # BR 6.1.1.3, on every issuance path
    requested = dns_names if dns_names else _csr_dns_names(csr)
    hosts: list[str] = []
    for name in requested:
        host = normalise_dns_name(name)
        if host not in hosts:
            hosts.append(host)
    subject = subject if subject is not None else csr.subject
    cn = names.get(subject, "CN")
    if not hosts and cn:
        hosts = [normalise_dns_name(cn)]
    if not hosts:
        raise InputError("no DNS name: the CSR has no subjectAltName and no --dns was given")
    if profile == "dv":
        # BR 7.1.2.7.2 (DV): no organisation fields, whatever the CSR says; the CN repeats a SAN.
        dv_subject = x509.Name([x509.NameAttribute(names.ATTRIBUTES["CN"], hosts[0])])
        return CheckedRequest(dv_subject, hosts, public_key, spki_sha256(public_key))
    missing = [k for k in ("C", "ST", "L", "O") if names.get(subject, k) is None]
    if missing:
        raise PolicyError(
            f"subject lacks {', '.join(missing)}: the policy requires C, ST, L and O (policy 3.1.1); "
            "give them in the CSR or with --subject"
        )
    if names.get(subject, "C") != "JP":
        raise PolicyError("subject C must be JP (policy 3.1.1)")
    if cn is None:
        subject = x509.Name([*subject, x509.NameAttribute(names.ATTRIBUTES["CN"], hosts[0])])
    elif cn.lower() not in hosts:
        raise PolicyError(f"subject CN {cn!r} is not one of the DNS names {hosts} (BR 7.1.2.7.2)")
    elif cn not in hosts:
        # BR 7.1.2.7.2: the CN repeats a SAN value byte for byte; host names are lower-cased there.
        subject = x509.Name(
            [x509.NameAttribute(a.oid, cn.lower()) if a.oid == names.ATTRIBUTES["CN"] else a for a in subject]
        )
    allowed = {names.ATTRIBUTES[k] for k in ("C", "ST", "L", "O", "OU", "CN")}
    if any(attr.oid not in allowed for attr in subject):
        raise PolicyError("subject has attributes other than C, ST, L, O, OU, CN (policy 3.1.1)")
    return CheckedRequest(subject, hosts, public_key, spki_sha256(public_key))
