"""Webhook signatures and unsubscribe tokens (services/alerts/signing.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.alerts.signing import (
    ExpiredToken,
    InvalidToken,
    address_tag,
    confirmation_token,
    new_webhook_secret,
    read_confirmation_token,
    read_unsubscribe_token,
    signature_headers,
    unsubscribe_token,
    webhook_signature,
)

KEY = b"k" * 32
COMPANY = "0b5cd5c4-54cf-4a49-8a8a-3f0f6a1b2c3d"


def test_webhook_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    secret, ts, body = "whsec_test", 1_700_000_000, b'{"id":"e1","data":{}}'
    expected = hmac.new(b"whsec_test", b'1700000000.{"id":"e1","data":{}}', hashlib.sha256).hexdigest()
    assert webhook_signature(secret, ts, body) == expected
    assert signature_headers(secret, ts, body) == {
        "Bondgenoot-Timestamp": "1700000000",
        "Bondgenoot-Signature": f"v1={expected}",
    }
    assert webhook_signature(secret, ts + 1, body) != expected  # the timestamp is signed too
    assert webhook_signature("whsec_other", ts, body) != expected


def test_new_secrets_are_long_random_and_prefixed() -> None:
    secrets = {new_webhook_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(s) == 6 + 43 for s in secrets)


ADDRESS = "bids@acoustics.example"


def test_unsubscribe_token_round_trips_and_is_bound_to_the_address() -> None:
    for channel in ("email", "webhook"):
        token = unsubscribe_token(KEY, COMPANY, channel, ADDRESS)  # type: ignore[arg-type]
        assert read_unsubscribe_token(KEY, token) == (COMPANY, channel, address_tag(ADDRESS))
        assert "/" not in token and "+" not in token and "=" not in token  # URL-safe as is
    assert address_tag("Bids@Acoustics.Example ") == address_tag(ADDRESS)  # as addresses compare
    assert address_tag("other@acoustics.example") != address_tag(ADDRESS)
    assert ADDRESS not in unsubscribe_token(KEY, COMPANY, "email", ADDRESS)  # the token does not carry it


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # MAC altered
        lambda t: "x" + t,  # payload altered
        lambda t: t.split(".")[0],  # MAC missing
        lambda t: "",
        lambda t: "!!!.???",
        lambda t: unsubscribe_token(b"another key entirely!!", COMPANY, "email", ADDRESS),
        lambda t: confirmation_token(KEY, COMPANY, ADDRESS, expires=2**40),  # another purpose, same key
    ],
)
def test_unsubscribe_token_rejects_anything_we_did_not_sign_for_it(mangle: object) -> None:
    token = unsubscribe_token(KEY, COMPANY, "email", ADDRESS)
    with pytest.raises(InvalidToken):
        read_unsubscribe_token(KEY, mangle(token))  # type: ignore[operator]


def test_unsubscribe_token_for_another_channel_or_address_is_another_token() -> None:
    email = unsubscribe_token(KEY, COMPANY, "email", ADDRESS)
    assert email != unsubscribe_token(KEY, COMPANY, "webhook", ADDRESS)
    assert email != unsubscribe_token(KEY, COMPANY, "email", "new@acoustics.example")


def test_a_confirmation_token_names_company_and_address_and_expires() -> None:
    token = confirmation_token(KEY, COMPANY, ADDRESS, expires=1_000)
    assert read_confirmation_token(KEY, token, now=999.5) == (COMPANY, address_tag(ADDRESS))
    with pytest.raises(ExpiredToken):
        read_confirmation_token(KEY, token, now=1_000.5)
    with pytest.raises(InvalidToken):  # an unsubscribe token is no confirmation
        read_confirmation_token(KEY, unsubscribe_token(KEY, COMPANY, "email", ADDRESS), now=0)
    with pytest.raises(InvalidToken):
        read_confirmation_token(b"x" * 32, token, now=0)
