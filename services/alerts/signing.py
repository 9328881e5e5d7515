"""HMAC signing: webhook request signatures and one-click unsubscribe tokens.

Webhooks (the scheme receivers implement; services/alerts/README.md states it precisely):
``Bondgenoot-Signature: v1=<hex HMAC-SHA256(secret, "{Bondgenoot-Timestamp}." + raw body)>``.

Links in e-mails carry tokens signed with ``ALERTS_TOKEN_SECRET``, one purpose each:

- unsubscribe (company, channel, address tag): no expiry — an unsubscribe link must keep working for
  as long as the e-mail it came in is read — but bound to the address the mail went to, so an old
  link cannot switch off a channel that now goes to someone else;
- e-mail confirmation (company, address tag, expiry): the address owner agrees to receive alerts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from services.alerts.delivery_models import CHANNELS, ChannelName

SIGNATURE_HEADER = "Bondgenoot-Signature"
TIMESTAMP_HEADER = "Bondgenoot-Timestamp"
SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A fresh signing secret: ``whsec_`` + 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, over ``"{timestamp}." + body``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={webhook_signature(secret, timestamp, body)}",
    }


class InvalidToken(ValueError):
    """The token was not issued by this service (or was altered), or it expired."""


class ExpiredToken(InvalidToken):
    """A genuine token whose time is up."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, payload: str) -> bytes:
    # The purpose is signed too: an unsubscribe token is never accepted as a confirmation, or back.
    return hmac.new(key, f"{purpose}:{payload}".encode(), hashlib.sha256).digest()


def sign(key: bytes, purpose: str, *fields: str) -> str:
    """``base64url(fields joined by ":") "." base64url(HMAC-SHA256(key, purpose ":" payload))``."""
    if any(":" in f for f in fields):
        raise ValueError("token fields may not contain ':'")
    payload = _b64(":".join(fields).encode())
    return f"{payload}.{_b64(_mac(key, purpose, payload))}"


def verify(key: bytes, purpose: str, token: str, *, count: int) -> list[str]:
    """The ``count`` fields of a token we signed for ``purpose``; raises :class:`InvalidToken` otherwise."""
    payload, _, mac = token.partition(".")
    # Compare the canonical encoding, so no second spelling of a token is accepted either.
    if not payload or not mac.isascii() or not hmac.compare_digest(mac, _b64(_mac(key, purpose, payload))):
        raise InvalidToken("bad signature")
    try:
        fields = _unb64(payload).decode().split(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken("malformed token") from exc
    if len(fields) != count or not all(fields):
        raise InvalidToken("malformed token")
    return fields


def address_tag(address: str) -> str:
    """What binds a token to one address without carrying it: 96 bits of its SHA-256 (case-folded)."""
    return _b64(hashlib.sha256(address.strip().casefold().encode()).digest()[:12])


def unsubscribe_token(key: bytes, company_id: str, channel: ChannelName, address: str) -> str:
    """The one-click unsubscribe token: this company's ``channel`` while it still goes to ``address``."""
    return sign(key, "unsubscribe", company_id, channel, address_tag(address))


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, ChannelName, str]:
    """(company id, channel, address tag) of a token we issued; raises :class:`InvalidToken` otherwise."""
    company_id, channel, tag = verify(key, "unsubscribe", token, count=3)
    if channel not in CHANNELS:
        raise InvalidToken("malformed token")
    return company_id, channel, tag  # type: ignore[return-value]


def confirmation_token(key: bytes, company_id: str, address: str, *, expires: int) -> str:
    """The e-mail confirmation token: proves whoever reads ``address`` asked for alerts, until ``expires``."""
    return sign(key, "confirm-email", company_id, address_tag(address), str(expires))


def read_confirmation_token(key: bytes, token: str, *, now: float) -> tuple[str, str]:
    """(company id, address tag); raises :class:`ExpiredToken` after its time, :class:`InvalidToken` if forged."""
    company_id, tag, expires = verify(key, "confirm-email", token, count=3)
    if not expires.isdigit():
        raise InvalidToken("malformed token")
    if now > int(expires):
        raise ExpiredToken("the link has expired")
    return company_id, tag
