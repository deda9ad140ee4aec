"""Revocation reasons: RFC 5280 5.3.1 names and codes, and which of them this CA uses. Pure.

Every table of reasons lives here: the codes a CRL entry carries, the reasons allowed on
subscriber CRLs and OCSP responses and on CRLs of CA certificates (BR 7.2.2), the ones refused
and why, the reason only the CA may choose, and the BR 4.9.1.1 deadline classes.
"""

from __future__ import annotations

from typing import Final, Literal

from cryptography import x509

ReasonName = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
]

# RFC 5280 5.3.1 CRLReason values by their ASN.1 names (7 is unused).
CODES: Final[dict[ReasonName, int]] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}

# The same names as pyca/cryptography's enumeration, for the OCSP response builder.
FLAGS: Final[dict[str, x509.ReasonFlags]] = {name: x509.ReasonFlags(name) for name in CODES}

# BR 7.2.2: a subscriber CRL (and OCSP response) may carry only these reasons (unspecified as an
# omitted reasonCode); a CRL covering CA certificates (an ARL) may also say cACompromise.
SUBSCRIBER_REASONS: Final[frozenset[ReasonName]] = frozenset(
    {
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    }
)
ARL_REASONS: Final[frozenset[ReasonName]] = SUBSCRIBER_REASONS | {"cACompromise"}

# The subscriber reasons in RFC 5280 code order, for messages.
ALLOWED: Final[list[ReasonName]] = sorted(SUBSCRIBER_REASONS, key=CODES.__getitem__)

# Reasons that exist in RFC 5280 but are never used on a revocation request here: suspension
# (policy 4.9.13, BR 4.9.13) and the CA-only ones (BR 7.2.2 allows cACompromise only on CRLs of CA
# certificates).
REFUSED: Final[dict[str, str]] = {
    "certificateHold": "suspension is not offered (policy 4.9.13, BR 7.2.2)",
    "removeFromCRL": "suspension is not offered (policy 4.9.13); removeFromCRL is for delta CRLs",
    "cACompromise": "cACompromise is for CA certificates only (BR 7.2.2)",
    "aACompromise": "aACompromise is not allowed (BR 7.2.2)",
}

# The rule a CRL names when an entry's reason may not appear on it (BR 7.2.2).
CRL_REFUSED: Final[dict[str, str]] = {
    "certificateHold": "BR 7.2.2, 4.9.13: certificateHold MUST NOT be used (no suspension, policy 4.9.13)",
    "removeFromCRL": "RFC 5280 5.3.1: removeFromCRL only belongs in delta CRLs, which BR 7.2 excludes",
    "cACompromise": "BR 7.2.2: cACompromise only on a CRL covering CA certificates (ARL)",
}

# BR 7.2.2: privilegeWithdrawn SHOULD NOT be offered to subscribers; the CA itself may use it.
CA_ONLY: Final[tuple[ReasonName, ...]] = ("privilegeWithdrawn",)

# BR 4.9.1.1: 24 hours for subscriber requests, key compromise, unauthorised requests and
# unreliable domain validation; 5 days for the rest. A reason that can stand for either takes the
# stricter deadline.
FIVE_DAY_REASONS: Final[tuple[ReasonName, ...]] = ("affiliationChanged", "cessationOfOperation")
