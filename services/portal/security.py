"""The portal's browser-facing defences: response headers, CSRF tokens, cookies, safe redirects.

- Every response carries a strict Content-Security-Policy (scripts and styles only from the portal's
  own ``/static``, no inline script or style, no framing, forms post only to the portal),
  ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``, ``X-Content-Type-Options: nosniff``.
  Pages are ``Cache-Control: no-store``: they can hold private data and once-shown tokens.
- CSRF: every form carries ``csrf_token`` = HMAC(portal secret, binding), where the binding is the
  session id when logged in and otherwise a random pre-session cookie (so the login and registration
  forms are protected too — no login CSRF). A POST without the right token is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
PRESESSION_COOKIE = "bg_csrf"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """Pure ASGI middleware (no buffering: Server-Sent Events stream through untouched)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                if static:
                    headers.setdefault("Cache-Control", "public, max-age=3600")
                else:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def csrf_token(secret: bytes, binding: str) -> str:
    return hmac.new(secret, b"csrf\0" + binding.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, binding: str | None, presented: Any) -> bool:
    if not binding or not isinstance(presented, str) or len(presented) != 64:
        return False
    return hmac.compare_digest(csrf_token(secret, binding), presented)


def new_presession() -> str:
    return secrets.token_urlsafe(24)


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to after a form; anything else (other hosts, schemes, ``//x``) is refused."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ch in target for ch in "\r\n\t"):
        return default
    return target
