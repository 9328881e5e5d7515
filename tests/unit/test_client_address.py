"""Whom a request comes from: X-Forwarded-For counts only from proxies named in the settings."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from shared.auth import AuthSettings
from shared.client_address import client_ip, parse_proxies


def request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    headers.append((b"x-real-ip", b"6.6.6.6"))  # never read
    return Request({"type": "http", "headers": headers, "client": (peer, 50000)})


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() -> None:
    assert client_ip(request("198.51.100.7", "203.0.113.1")) == "198.51.100.7"
    assert client_ip(request("127.0.0.1", "203.0.113.1")) == "127.0.0.1"  # not even from loopback


def test_behind_trusted_proxies_the_first_address_no_proxy_vouches_for_is_the_client() -> None:
    proxies = parse_proxies(["10.0.0.0/8", "127.0.0.1"])
    assert client_ip(request("10.0.0.5", "203.0.113.9"), proxies) == "203.0.113.9"
    # A client that prepends addresses gets the one its first proxy saw: its own.
    assert client_ip(request("10.0.0.5", "1.2.3.4, 203.0.113.9"), proxies) == "203.0.113.9"
    # Two proxies in a row, and several header lines: read from the right, skipping trusted hops.
    assert client_ip(request("127.0.0.1", "1.2.3.4, 203.0.113.9", "10.1.1.1"), proxies) == "203.0.113.9"
    assert client_ip(request("10.0.0.5", "[2001:db8::7]"), proxies) == "2001:db8::7"
    # Garbage further out: the last hop a trusted proxy vouched for.
    assert client_ip(request("10.0.0.5", "nonsense, 203.0.113.9"), proxies) == "203.0.113.9"
    assert client_ip(request("10.0.0.5", "10.9.9.9, nonsense"), proxies) == "10.0.0.5"
    # Only proxies: the left-most.
    assert client_ip(request("10.0.0.5", "10.2.2.2"), proxies) == "10.2.2.2"
    assert client_ip(request("10.0.0.5"), proxies) == "10.0.0.5"


def test_the_setting_takes_a_comma_separated_list_and_refuses_typos() -> None:
    assert AuthSettings(BONDGENOOT_TRUSTED_PROXIES="10.0.0.5, 192.168.0.0/16").trusted_proxies == (  # type: ignore[call-arg]
        "10.0.0.5",
        "192.168.0.0/16",
    )
    assert AuthSettings().trusted_proxies == ()
    with pytest.raises(ValueError, match=r"proxy\.example"):
        AuthSettings(BONDGENOOT_TRUSTED_PROXIES="proxy.example")  # type: ignore[call-arg]


def test_a_peer_that_proved_it_is_a_platform_component_names_the_client() -> None:
    # The portal: not a proxy by address, but it presented the internal secret (shared.auth decides).
    assert client_ip(request("172.18.0.9", "203.0.113.9"), peer_vouched=True) == "203.0.113.9"
    # What the browser made up in front of the portal's own entry does not move it.
    assert client_ip(request("172.18.0.9", "1.2.3.4, 203.0.113.9"), peer_vouched=True) == "203.0.113.9"
    assert client_ip(request("172.18.0.9"), peer_vouched=True) == "172.18.0.9"
