"""Who is calling: the socket's peer, unless that peer is a proxy the operator trusts (TRUSTED_PROXIES), then the
nearest address in `X-Forwarded-For` that is not a trusted proxy.

Rate limits count per client address, so a forwarded header must never be believed from anyone else: a caller
inventing a new `X-Forwarded-For` on each request would get a fresh bucket each time. With no trusted proxies
(the default) the header is ignored entirely.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = b"x-forwarded-for"


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """TRUSTED_PROXIES' CIDRs (a bare address is its own /32 or /128); raises ValueError naming a bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {cidr!r} is not an IP network (CIDR) or address") from None
    return tuple(networks)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    peer = scope.get("client")
    address = peer[0] if peer else "unknown"
    if not trusted or not _is_trusted(address, trusted):
        return address
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == FORWARDED_FOR:
            hops.extend(hop.strip() for hop in value.decode("latin-1").split(","))
    # The right-most entries were added by our own proxies; the first untrusted one from the right is the client.
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else address
    return hops[0] if hops and _is_address(hops[0]) else address


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
