"""Partitioned CRLs (`crl.shards`): which CRL a certificate names, and where each CRL lives. Pure.

A certificate's shard is chosen at issuance from its serial, which is random, so the
certificates of any day spread evenly over every shard (and a mass revocation of one day's
certificates touches every shard about equally). The shard is stored with the certificate and
written into its CRL Distribution Point, and never changes: raising `crl.shards` only affects
certificates issued afterwards. Shard 0 is the issuer's full CRL (`issuing-ca.crl`), named by
every certificate issued with `crl.shards = 1`; shard N > 0 is `issuing-ca-N.crl`. A shard's URL
depends only on its number, so it is the same for every certificate that names it, for as long
as the CA lives.
"""

from __future__ import annotations

import re

# A CRL file name in the repository: "issuing-ca", "issuing-ca-7", "root".
_NAME = re.compile(r"^(?P<issuer>[a-z][a-z-]*?[a-z])(?:-(?P<shard>[1-9][0-9]{0,4}))?$")


def shard_of(serial: int, shards: int) -> int:
    """The shard a new certificate with this serial names: 0 with one CRL, else 1..shards."""
    if shards <= 1:
        return 0
    return serial % shards + 1


def crl_name(issuer_name: str, shard: int) -> str:
    """The CRL's file name in the repository, without ".crl"."""
    return issuer_name if shard == 0 else f"{issuer_name}-{shard}"


def parse_crl_name(name: str) -> tuple[str, int] | None:
    """(issuer name, shard) of a repository CRL name, or None when it is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    return match["issuer"], int(match["shard"] or 0)


def crl_url(repository: str, issuer_name: str, shard: int) -> str:
    """The URL of that CRL under the repository base URL (which ends in "/")."""
    return f"{repository}{crl_name(issuer_name, shard)}.crl"


def published_shards(configured: int, in_use: int) -> list[int]:
    """The shards an issuer publishes: the full CRL, and 1..N for the larger of the configured
    count and the highest shard any certificate names (lowering `crl.shards` must not orphan
    the certificates that name a higher one)."""
    top = max(configured if configured > 1 else 0, in_use)
    return [0, *range(1, top + 1)]
