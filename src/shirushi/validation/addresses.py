"""Which addresses a validation may connect to (BR 3.2.2.4: the ADN's own public hosts). Pure.

Private, link-local, multicast, reserved and unspecified addresses are never contacted (a name
pointing at them would make the CA probe its own network); loopback only when
`validation.allow_loopback` is set, which tests do.
"""

from __future__ import annotations

import ipaddress


def refusal(address: str, *, allow_loopback: bool) -> str | None:
    """Why `address` may not be contacted, or None when it may."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return f"{ip} is not a public unicast address"
    if ip.is_private or not ip.is_global:
        return f"{ip} is a private address"
    return None
