"""Where webhooks may go: the destination policy, checked at registration and at every connection.

A webhook URL is chosen by a company, and the POST is made from inside the platform. Without a
policy a company could make the alerts service call the registry, a database admin page or the
cloud's metadata endpoint. So:

1. Only ``https`` URLs, except in local mode (``BONDGENOOT_ENV`` local or test), where ``http`` is
   allowed too.
2. Every address a URL's host resolves to must be globally routable: loopback, private, link-local,
   carrier-grade NAT, multicast, unspecified, reserved, documentation and cloud-metadata addresses are
   refused, for IPv4 and IPv6 alike. An IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64,
   6to4) is judged by the IPv4 address it carries.
3. The check runs when the URL is registered (a clear 422) and again, authoritatively, when a
   connection is opened: :class:`GuardedNetworkBackend` resolves the host once, checks every address
   and connects to exactly the address it checked, so a DNS answer that changes between the check and
   the connection (DNS rebinding) cannot reach inside.
4. ``ALERTS_WEBHOOK_ALLOW`` names the exceptions for local development and tests: host names (any
   address they resolve to is accepted) and networks (``127.0.0.1``, ``10.0.0.0/8``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

# Checked in order; the first network that holds an address names the reason it is refused.
_REFUSED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "cloud metadata"),
    ("169.254.170.2/32", "cloud metadata"),
    ("100.100.100.200/32", "cloud metadata"),
    ("192.0.0.192/32", "cloud metadata"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason) for net, reason in _REFUSED
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(Exception):
    """A webhook URL (or the address it resolves to) that the policy does not allow; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64 64:ff9b::/96, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a webhook destination (None: globally routable, allowed)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # fe80::1%eth0: the zone does not change what the address is
            address = ipaddress.IPv6Address(int(address))
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner)
            return f"{reason}, embedded in {address}" if reason else None
    for network, reason in REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if address.is_multicast:
        return "multicast"
    if address.is_reserved or not address.is_global:
        return "not globally routable"
    return None


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address ``getaddrinfo`` gives for ``host`` (in its order, without repeats)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), None)
    return list(seen)


@dataclass(frozen=True)
class DestinationPolicy:
    """The rules above; ``allow`` holds the exceptions (``ALERTS_WEBHOOK_ALLOW``)."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(
        cls, *, allow: Iterable[str], local_mode: bool, resolver: Resolver = system_resolver
    ) -> DestinationPolicy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(_host_key(entry))
        return cls(
            allow_http=local_mode, allowed_hosts=frozenset(hosts), allowed_networks=tuple(networks), resolver=resolver
        )

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port if its form is acceptable (scheme, a host); raises DestinationRefused."""
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme.lower() not in schemes:
            raise DestinationRefused(f"the URL must use {' or '.join(schemes)}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise DestinationRefused(f"the URL's port is not valid: {exc}") from exc
        if not host:
            raise DestinationRefused("the URL has no host")
        return host, port or (443 if parts.scheme.lower() == "https" else 80)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Raise DestinationRefused unless ``address`` (one that ``host`` resolved to) may be connected to."""
        if _host_key(host) in self.allowed_hosts:
            return
        if any(address.version == net.version and address in net for net in self.allowed_networks):
            return
        reason = refusal(address)
        if reason is not None:
            shown = host if _parse_ip(host) is not None else f"{host} resolves to {address}, which"
            raise DestinationRefused(f"{shown} is {_article(reason)} address; webhooks only go to public addresses")

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for ``host``, all of them checked; raises DestinationRefused."""
        literal = _parse_ip(host)
        addresses = [literal] if literal is not None else await self.resolver(host, port)
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:
            self.check_address(host, address)
        return addresses

    async def check_destination(self, url: str) -> None:
        """The registration check: the URL's form, and where its host points *now* (a name that does not
        resolve yet is accepted: the check at connection time decides)."""
        host, port = self.check_url(url)
        try:
            await self.resolve(host, port)
        except OSError:
            return


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _article(reason: str) -> str:
    return ("an " if reason[:1].lower() in "aeiou" else "a ") + reason


# --------------------------------------------------------------------------- the connection-time check


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the policy allows, and only to the address it checked.

    httpcore asks the backend for a connection to the URL's host; this backend resolves the host once,
    checks every address, then connects to those addresses (in order, first success wins). TLS still
    verifies the certificate against the host name (httpcore passes it as the server name).
    """

    def __init__(self, policy: DestinationPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except OSError as exc:  # the name does not resolve (now): a connection error, retried later
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # resolve() never returns an empty list
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("webhooks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: DestinationPolicy, *, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through :class:`GuardedNetworkBackend`.

    httpx has no public switch for the network backend, so the transport's connection pool is
    replaced by one built the same way with the guarded backend
    (``tests/unit/alerts/test_alerts_destination.py`` fails if a new httpx ignores it). Proxies from
    the environment are not used: a proxy would resolve the host itself, unchecked.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedNetworkBackend(policy),
    )
    return transport
