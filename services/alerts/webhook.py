"""Webhook POSTs: the alert's CloudEvent (structured JSON), signed, with a hard timeout.

Classification of the answer (what the delivery worker does next):

- 2xx: delivered;
- 408, 429, any 5xx, a timeout or a connection error: retryable (next retry topic);
- anything else (3xx is not followed, other 4xx): permanent, dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from services.alerts.delivery_models import Outcome
from services.alerts.signing import signature_headers

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "Bondgenoot-Webhooks/1"
RETRYABLE_4XX = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


class WebhookSender:
    """One pooled HTTP client for all webhook POSTs of this process."""

    def __init__(self, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                headers={"user-agent": USER_AGENT},
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(
        self,
        url: str,
        *,
        secret: str,
        body: bytes,
        event_id: str,
        delivery_id: str,
        attempt: int,
        timestamp: int | None = None,
    ) -> Outcome:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": CONTENT_TYPE,
            "Bondgenoot-Event-Id": event_id,
            "Bondgenoot-Delivery": delivery_id,
            "Bondgenoot-Attempt": str(attempt),
            **signature_headers(secret, ts, body),
        }
        start = time.perf_counter()
        try:
            # httpx's timeout is per phase (connect, each read, ...); this bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                response = await self._http().post(url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return Outcome(
                ok=False,
                retryable=True,
                error=f"timeout after {self._timeout_s}s ({type(exc).__name__})",
                latency_ms=_ms(start),
            )
        except httpx.HTTPError as exc:
            return Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}"[:2000], latency_ms=_ms(start))
        latency = _ms(start)
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(ok=True, status_code=status, latency_ms=latency)
        snippet = response.text[:300] if response.content else ""
        return Outcome(
            ok=False,
            retryable=is_retryable_status(status),
            status_code=status,
            error=f"HTTP {status}" + (f": {snippet}" if snippet else ""),
            latency_ms=latency,
        )


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
