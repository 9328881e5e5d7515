"""Who is calling: the client address that limits and logs use, and when a proxy's word for it counts.

The TCP peer is the client, unless the peer is a proxy named in ``BONDGENOOT_TRUSTED_PROXIES``
(addresses or networks, comma-separated; default: none). Only then is ``X-Forwarded-For`` read, from
the right: each hop a trusted proxy added is skipped, and the first address no trusted proxy vouches
for is the client. ``Forwarded``, ``X-Real-IP`` and the like are never read. Without this rule anyone
could pick the address their failed logins are counted against, or get someone else's counted.

A platform component that acts for a browser (the portal) is a proxy too, but not one named by its
address (a container's address is not known in advance): it proves itself with the internal secret
(``X-Internal-Token``, checked by ``shared.auth.AuthGuard``) and names the browser in
``X-Forwarded-For``; ``peer_vouched`` then treats the peer as trusted. Without it every failed login
through the portal would count against the portal's address, and a few bad tokens would lock every
portal user out.

uvicorn must not rewrite the peer itself (its ``proxy_headers``, on by default for 127.0.0.1):
``shared.http.server_config`` turns that off, so the rule above is the only one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import HTTPConnection

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "x-forwarded-for"


def parse_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["10.0.0.5", "10.1.0.0/16"]`` as networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"BONDGENOOT_TRUSTED_PROXIES: {entry!r} is not an address or network") from exc
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address.version == p.version and address in p for p in proxies)


def client_ip(connection: HTTPConnection, proxies: tuple[IPNetwork, ...] = (), *, peer_vouched: bool = False) -> str:
    """The client's address (see the module docstring); "unknown" when the server gives no peer.

    ``peer_vouched``: the peer proved it is a platform component, so its ``X-Forwarded-For`` counts.
    """
    peer = connection.client.host if connection.client else "unknown"
    if not peer_vouched and not _trusted(_address(peer), proxies):
        return peer
    hops = [h for value in connection.headers.getlist(FORWARDED_FOR) for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage from further out: the last hop we can vouch for is the answer
            return client
        client = str(address)
        if not _trusted(address, proxies):
            return client
    return client
