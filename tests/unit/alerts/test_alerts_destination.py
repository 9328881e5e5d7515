"""The webhook destination policy: which addresses are refused, the allowlist, and the pinned connection.

The connection tests use real sockets on loopback addresses (the allowlist lets them through) and a
resolver the test controls, so a DNS answer that changes between the check and the connection can
be played deterministically.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.alerts.delivery_models import Outcome
from services.alerts.destination import (
    DestinationPolicy,
    DestinationRefused,
    IPAddress,
    guarded_transport,
    refusal,
)
from services.alerts.webhook import WebhookSender

LIMITS = httpx.Limits(max_connections=10)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "reserved"),
        ("192.0.2.10", "documentation"),
        ("2001:db8::1", "documentation"),
        ("::ffff:127.0.0.1", "loopback, embedded in ::ffff:7f00:1"),
        ("::ffff:10.0.0.1", "private, embedded in ::ffff:a00:1"),
        ("::ffff:169.254.169.254", "cloud metadata, embedded in ::ffff:a9fe:a9fe"),
        ("64:ff9b::a00:1", "private, embedded in 64:ff9b::a00:1"),
        ("2002:7f00:1::", "loopback, embedded in 2002:7f00:1::"),
        ("::7f00:1", "IPv4-compatible (deprecated)"),
        ("2001::1", "reserved"),
    ],
)
def test_addresses_inside_or_special_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "193.190.198.27", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def resolver(answers: dict[str, list[str]], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise OSError(f"{host}: name not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    return resolve


async def test_a_name_that_resolves_inside_is_refused_even_when_only_one_address_is_inside() -> None:
    policy = DestinationPolicy(
        resolver=resolver({"inside.test": ["10.0.0.7"], "mixed.test": ["93.184.215.14", "127.0.0.1"]})
    )
    with pytest.raises(DestinationRefused, match=r"inside.test resolves to 10.0.0.7, which is a private address"):
        await policy.check_destination("https://inside.test/hook")
    with pytest.raises(DestinationRefused, match="loopback"):
        await policy.check_destination("https://mixed.test/hook")
    with pytest.raises(DestinationRefused, match=r"169.254.169.254 is a cloud metadata address"):
        await policy.check_destination("https://169.254.169.254/latest/meta-data/")
    with pytest.raises(DestinationRefused, match="loopback"):
        await policy.check_destination("https://[::ffff:127.0.0.1]:8001/auth/introspect")


async def test_only_https_outside_local_mode_and_a_name_not_resolving_yet_is_left_to_connection_time() -> None:
    production = DestinationPolicy.from_settings(allow=[], local_mode=False, resolver=resolver({}))
    with pytest.raises(DestinationRefused, match="must use https"):
        await production.check_destination("http://hooks.example.org/x")
    with pytest.raises(DestinationRefused, match="must use https"):
        await production.check_destination("ftp://hooks.example.org/x")
    await production.check_destination("https://hooks.example.org/x")  # does not resolve now: checked on connect
    local = DestinationPolicy.from_settings(allow=[], local_mode=True, resolver=resolver({}))
    await local.check_destination("http://hooks.example.org/x")
    with pytest.raises(DestinationRefused, match="must use https or http"):
        await local.check_destination("gopher://hooks.example.org/x")


async def test_the_allowlist_names_hosts_and_networks_and_nothing_else() -> None:
    policy = DestinationPolicy.from_settings(
        allow=["127.0.0.1", " receiver.LAN. ", "10.20.0.0/16"],
        local_mode=True,
        resolver=resolver({"receiver.lan": ["192.168.7.7"], "other.lan": ["192.168.7.8"]}),
    )
    await policy.check_destination("http://127.0.0.1:9000/hook")
    await policy.check_destination("http://receiver.lan/hook")  # named: whatever it resolves to
    await policy.check_destination("http://10.20.3.4/hook")
    for refused in ("http://127.0.0.2/hook", "http://other.lan/hook", "http://10.21.0.1/hook", "http://[::1]/hook"):
        with pytest.raises(DestinationRefused):
            await policy.check_destination(refused)


# --------------------------------------------------------------------------- real connections


@asynccontextmanager
async def http_server(host: str, answer: bytes, seen: list[str]) -> AsyncIterator[int]:
    """A raw HTTP/1.1 server on ``host`` that notes each request line and sends ``answer``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b"\r\n", 1)[0].decode())
        writer.write(answer)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # the client stopped reading, as it should for a huge answer
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port


def loopback_sender() -> WebhookSender:
    return WebhookSender(timeout_s=5, policy=DestinationPolicy.from_settings(allow=["127.0.0.1"], local_mode=True))


async def post(sender: WebhookSender, url: str, attempt: int = 1) -> Outcome:
    return await sender.post(url, secret="s", body=b"{}", event_id="e", delivery_id="d", attempt=attempt)


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"


async def test_every_connection_of_the_webhook_client_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if an httpx upgrade stops using the guarded pool, or if proxies from the environment are honoured."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy would resolve names itself, unchecked
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    seen: list[str] = []
    async with http_server("127.0.0.1", OK, seen) as port:
        async with httpx.AsyncClient(transport=guarded_transport(DestinationPolicy(), limits=LIMITS)) as client:
            with pytest.raises(DestinationRefused, match="loopback"):
                await client.post(f"https://127.0.0.1:{port}/hook")
        allowed = DestinationPolicy.from_settings(allow=["127.0.0.1"], local_mode=True)
        async with httpx.AsyncClient(transport=guarded_transport(allowed, limits=LIMITS), trust_env=False) as client:
            assert (await client.post(f"http://127.0.0.1:{port}/hook")).status_code == 200
    assert seen == ["POST /hook HTTP/1.1"]


async def test_dns_rebinding_cannot_move_the_connection_off_the_checked_address() -> None:
    """The name is resolved once per connection and the connection goes to exactly that address."""
    to_checked: list[str] = []
    to_rebound: list[str] = []
    async with (
        http_server("127.0.0.2", OK, to_checked) as port,
        http_server("127.0.0.3", OK, to_rebound) as other_port,
    ):
        answers = iter([["127.0.0.2"], ["127.0.0.3"], ["127.0.0.3"]])
        calls: list[str] = []

        async def rebinding(host: str, port_: int) -> list[IPAddress]:
            calls.append(host)
            return [ipaddress.ip_address(a) for a in next(answers)]

        policy = DestinationPolicy.from_settings(allow=["127.0.0.2/32"], local_mode=True, resolver=rebinding)
        sender = WebhookSender(timeout_s=5, policy=policy)
        try:
            first = await post(sender, f"http://rebind.test:{port}/hook")
            assert first.ok, first
            assert to_checked == ["POST /hook HTTP/1.1"] and calls == ["rebind.test"]
            # Now the name points at 127.0.0.3, which the policy does not allow: refused, not connected.
            second = await post(sender, f"http://rebind.test:{other_port}/hook", attempt=2)
        finally:
            await sender.aclose()
    assert not second.ok and not second.retryable
    assert second.error == "destination refused: rebind.test resolves to 127.0.0.3, which is a loopback address; " + (
        "webhooks only go to public addresses"
    )
    assert to_rebound == []


async def test_a_redirect_is_a_permanent_failure_and_is_not_followed() -> None:
    seen: list[str] = []
    redirect = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/latest\r\n"
    redirect += b"content-length: 0\r\n\r\n"
    async with http_server("127.0.0.1", redirect, seen) as port:
        sender = loopback_sender()
        try:
            outcome = await post(sender, f"http://127.0.0.1:{port}/hook")
        finally:
            await sender.aclose()
    assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, False, 307)
    assert outcome.error == "HTTP 307: redirects are not followed (Location: http://169.254.169.254/latest)"
    assert seen == ["POST /hook HTTP/1.1"]


async def test_only_the_head_of_an_answer_is_read_and_the_log_keeps_one_short_line() -> None:
    body = (b"line one\r\nline two\x00\x1b[31m" + b"x" * 5000) * 2000  # ~10 MB
    answer = b"HTTP/1.1 500 Oops\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    seen: list[str] = []
    async with http_server("127.0.0.1", answer, seen) as port:
        sender = loopback_sender()
        try:
            outcome = await post(sender, f"http://127.0.0.1:{port}/hook")
        finally:
            await sender.aclose()
    assert outcome.retryable and outcome.status_code == 500
    assert outcome.error is not None and outcome.error.startswith("HTTP 500: line one line two")
    assert len(outcome.error) <= 300 and "\n" not in outcome.error and "\x00" not in outcome.error
