"""Webhook POSTs: the alert's CloudEvent (structured JSON), signed, with a hard timeout.

Classification of the answer (what the delivery worker does next):

- 2xx: delivered;
- 408, 429, any 5xx, a timeout or a connection error: retryable (next retry topic);
- anything else is permanent and dead-lettered at once: a redirect (3xx is never followed, and is not
  a success), any other 4xx, and a destination the policy refuses (services/alerts/destination.py).

Every connection goes through the destination policy, checked on the address actually connected
to. Only the first ``READ_CAP`` bytes of an answer are read, never the whole body; the attempt log
keeps the status, the latency and a one-line excerpt of at most ``EXCERPT_CHARS`` characters.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from services.alerts.delivery_models import Outcome
from services.alerts.destination import DestinationPolicy, DestinationRefused, guarded_transport
from services.alerts.signing import signature_headers

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "Bondgenoot-Webhooks/1"
RETRYABLE_4XX = frozenset({408, 429})
READ_CAP = 1024
"""Bytes of a receiver's answer read at most: enough for an excerpt, never a whole (huge) body."""


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


class WebhookSender:
    """One pooled HTTP client for all webhook POSTs of this process, behind the destination policy."""

    def __init__(self, *, timeout_s: float, policy: DestinationPolicy) -> None:
        self._timeout_s = timeout_s
        self.policy = policy
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._client = httpx.AsyncClient(
                transport=guarded_transport(self.policy, limits=limits),
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                trust_env=False,
                headers={"user-agent": USER_AGENT},
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
            # An excerpt of a compressed answer would be noise, and decompressing is how bombs go off.
            "accept-encoding": "identity",
            "Bondgenoot-Event-Id": event_id,
            "Bondgenoot-Delivery": delivery_id,
            "Bondgenoot-Attempt": str(attempt),
            **signature_headers(secret, ts, body),
        }
        start = time.perf_counter()
        try:
            self.policy.check_url(url)  # the scheme rule may have tightened since the URL was registered
            # httpx's timeout is per phase (connect, each read, ...); this bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                async with self._http().stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
                    encoding = response.headers.get("content-encoding", "identity").lower()
                    location = response.headers.get("location", "")
                    # Read (up to the cap) even a 2xx: a short body read to its end leaves the connection
                    # reusable (keep-alive); anything longer is cut off and the connection closed.
                    head = await _read_capped(response) if encoding in ("identity", "") else b""
        except DestinationRefused as exc:
            return Outcome(ok=False, error=f"destination refused: {exc.reason}", latency_ms=_ms(start))
        except (TimeoutError, httpx.TimeoutException) as exc:
            return Outcome(
                ok=False,
                retryable=True,
                error=f"timeout after {self._timeout_s}s ({type(exc).__name__})",
                latency_ms=_ms(start),
            )
        except httpx.HTTPError as exc:
            return Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}", latency_ms=_ms(start))
        latency = _ms(start)
        if 200 <= status < 300:
            return Outcome(ok=True, status_code=status, latency_ms=latency)
        if 300 <= status < 400:
            detail = "redirects are not followed" + (f" (Location: {location})" if location else "")
        elif encoding not in ("identity", ""):
            detail = f"({encoding}-encoded answer not shown)"
        else:
            detail = head.decode("utf-8", errors="replace")
        return Outcome(
            ok=False,
            retryable=is_retryable_status(status),
            status_code=status,
            error=f"HTTP {status}" + (f": {detail}" if detail.strip() else ""),
            latency_ms=latency,
        )


async def _read_capped(response: httpx.Response) -> bytes:
    """At most READ_CAP bytes of an uncompressed body, as they come off the wire; the rest is never read."""
    head = bytearray()
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= READ_CAP:
            break
    return bytes(head[:READ_CAP])


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
