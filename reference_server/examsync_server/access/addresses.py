"""The client's address, as the login throttle counts it.

The connection's peer (the ASGI scope's `client`), unless the peer is a proxy the operator
trusts (`trusted_proxies`): then the nearest address in `X-Forwarded-For` that is not one of
those proxies. The entries further left are whatever the client wrote, so they are never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..config import IPNetwork

UNKNOWN = "unknown"  # no peer: a unix socket, or a test client


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork]
) -> str:
    address = peer or UNKNOWN
    if not proxies or not forwarded_for or not _trusted(address, proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a hop we cannot read: the last one we could
        address = hop
        if not _trusted(hop, proxies):
            return hop
    return address
