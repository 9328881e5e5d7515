"""How the portal calls a service: one httpx client per service, the user's token forwarded.

The portal adds no access of its own: every call carries the logged-in account's token (or none),
and the service decides. Errors become typed exceptions the views turn into pages: 401 on a token
that was accepted at login means it was revoked or rotated since (the session ends), 403/404 are shown
as such, 400/409/422 carry field-level messages for the form, 5xx and network errors say the service
is unavailable. The time spent waiting for services is recorded per request (``Server-Timing: api``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

Json = dict[str, Any]

client_address: ContextVar[str | None] = ContextVar("portal_client_address", default=None)
api_spans: ContextVar[list[tuple[float, float]] | None] = ContextVar("portal_api_spans", default=None)


def api_time_ms(spans: list[tuple[float, float]]) -> float:
    """Wall time covered by the spans (overlapping calls count once)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total * 1000


class ApiError(Exception):
    """A service said no (or said nothing)."""

    def __init__(self, service: str, status: int, detail: Any = None) -> None:
        super().__init__(f"{service}: HTTP {status}: {detail!r}"[:500])
        self.service = service
        self.status = status
        self.detail = detail


class Unauthorized(ApiError):
    """The token was refused: revoked, rotated, or never valid."""


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


@dataclass
class Invalid(ApiError):
    """400/409/422: the request was refused for its content; ``fields`` maps form field → message."""

    service: str
    status: int
    detail: Any = None
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.service, self.status, self.detail)


class Unavailable(ApiError):
    """5xx, a timeout or a refused connection."""


class RateLimited(ApiError):
    pass


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return body.get("detail", body) if isinstance(body, dict) else body


def raise_for(service: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _detail(response)
    if status == 401:
        raise Unauthorized(service, status, detail)
    if status == 403:
        raise Forbidden(service, status, detail)
    if status == 404:
        raise NotFound(service, status, detail)
    if status == 429:
        raise RateLimited(service, status, detail)
    if status in (400, 409, 422):
        raise Invalid(service, status, detail)
    raise Unavailable(service, status, detail)


class ServiceClient:
    """JSON calls to one service; ``token`` is the logged-in account's API token (None: anonymous)."""

    name = ""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        address = client_address.get()
        if address:
            # The services count failed authentications per client: let them see the browser, not the portal.
            headers["X-Forwarded-For"] = address
        return headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for 204); raises an :class:`ApiError` otherwise."""
        query = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        started = time.perf_counter()
        try:
            response = await self.http.request(
                method, self.base_url + path, headers=self._headers(token), json=json, params=query
            )
        except httpx.HTTPError as exc:
            raise Unavailable(self.name, 503, f"{type(exc).__name__}") from exc
        finally:
            spans = api_spans.get()
            if spans is not None:
                spans.append((started, time.perf_counter()))
        raise_for(self.name, response)
        return None if response.status_code == 204 or not response.content else response.json()

    @contextlib.asynccontextmanager
    async def events(
        self, path: str, *, token: str | None, last_event_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[tuple[str, str, str | None]]]:
        """Open a Server-Sent Events stream; yields an iterator of (event, data, id)."""
        headers = {**self._headers(token), "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with self.http.stream("GET", self.base_url + path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for(self.name, response)
                yield parse_sse(response.aiter_lines())
        except httpx.HTTPError as exc:
            raise Unavailable(self.name, 503, f"{type(exc).__name__}") from exc


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str, str | None]]:
    """The events of a text/event-stream (the WHATWG rules we need: event, data, id; comments skipped)."""
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _sep, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
