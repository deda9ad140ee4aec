"""Distinguished names written as "C=JP, O=Example, CN=Example CA" (RFC 4514 order as written).

Pure. Only the attributes the policy uses (3.1.1) are accepted, so a typo is an error rather than a
silently dropped attribute. A comma inside a value is escaped as "\\,".
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from shirushi.errors import InputError

ATTRIBUTES = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}

_SPLIT = re.compile(r"(?<!\\),")


def parse_name(text: str) -> x509.Name:
    """Parse "C=JP, O=..., CN=..." into an x509.Name, keeping the order given."""
    attributes = []
    for part in _SPLIT.split(text):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().upper(), value.strip().replace("\\,", ",")
        if not sep or not value:
            raise InputError(f"distinguished name {text!r}: {part!r} is not KEY=value")
        if key not in ATTRIBUTES:
            raise InputError(f"distinguished name {text!r}: attribute {key!r} is not one of {', '.join(ATTRIBUTES)}")
        if key == "C" and (len(value) != 2 or not value.isalpha() or not value.isupper()):
            raise InputError(f"distinguished name {text!r}: C must be a two-letter country code")
        attributes.append(x509.NameAttribute(ATTRIBUTES[key], value))
    if not attributes:
        raise InputError("distinguished name is empty")
    return x509.Name(attributes)


def get(name: x509.Name, key: str) -> str | None:
    """The first value of attribute `key` ("CN", "O", ...) in `name`, or None."""
    values = name.get_attributes_for_oid(ATTRIBUTES[key])
    return str(values[0].value) if values else None
