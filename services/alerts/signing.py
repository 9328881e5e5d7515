"""HMAC signing: webhook request signatures and one-click unsubscribe tokens.

Webhooks (the scheme receivers implement; services/alerts/README.md states it precisely):
``Bondgenoot-Signature: v1=<hex HMAC-SHA256(secret, "{Bondgenoot-Timestamp}." + raw body)>``.

Unsubscribe tokens: ``base64url(company_id ":" channel) "." base64url(HMAC-SHA256(key, "unsubscribe:" payload))``
with ``key`` = ``ALERTS_TOKEN_SECRET``. They carry no expiry: an unsubscribe link must keep working for
as long as the e-mail it came in is read.
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
    """The token was not issued by this service (or was altered)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()


def unsubscribe_token(key: bytes, company_id: str, channel: ChannelName) -> str:
    payload = _b64(f"{company_id}:{channel}".encode())
    return f"{payload}.{_b64(_mac(key, payload))}"


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, ChannelName]:
    """The (company id, channel) a token names; raises :class:`InvalidToken` unless our MAC checks out."""
    payload, _, mac = token.partition(".")
    # Compare the canonical encoding, so no second spelling of a token is accepted either.
    if not payload or not mac.isascii() or not hmac.compare_digest(mac, _b64(_mac(key, payload))):
        raise InvalidToken("bad signature")
    try:
        decoded = _unb64(payload).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken("malformed token") from exc
    company_id, _, channel = decoded.rpartition(":")
    if not company_id or channel not in CHANNELS:
        raise InvalidToken("malformed token")
    return company_id, channel  # type: ignore[return-value]
