"""The services in-process for schemathesis: requests go to the ASGI apps on their own event loop.

schemathesis generates a case and validates the answer; this module sends it. The apps hold
asyncpg connections, which belong to the event loop that opened them, so every request and the
set-up and tear-down run on one loop thread (an anyio blocking portal) that the synchronous
hypothesis tests hand work to. A Server-Sent Events answer is read for a moment, then hung up on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from anyio.from_thread import BlockingPortal, start_blocking_portal
from schemathesis import Case
from schemathesis.core.transport import Response

from services.calls.replay.server import run_replay_server
from shared.auth import INTERNAL_TOKEN_HEADER, AuthSettings
from tests.infra import Databases, admin_headers
from tests.integration.apis import Apis, five_services

STREAM_READ_S = 0.3
"""How long an event stream is read before the client hangs up (it never ends by itself)."""
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    cut_short: bool


async def call_asgi(app: Any, request: requests.PreparedRequest, *, timeout_s: float = REQUEST_TIMEOUT_S) -> Answer:
    """One HTTP request to an ASGI app, as a server would pass it (latin-1 headers, raw path)."""
    url = urlsplit(str(request.url))
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [(b"host", (url.hostname or "testserver").encode())]
    headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in request.headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": unquote(url.path),
        "raw_path": url.path.encode(),
        "query_string": url.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": (url.hostname or "testserver", 80),
    }
    sent = False
    done, started = asyncio.Event(), asyncio.Event()
    answer = Answer(0, [], b"", False)
    chunks: list[bytes] = []
    stream = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal stream
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            stream = any(k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in answer.headers)
            started.set()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(started.wait(), timeout_s)
        if stream:
            try:
                await asyncio.wait_for(done.wait(), STREAM_READ_S)
            except TimeoutError:
                answer.cut_short = True
                done.set()  # the client hangs up
        await asyncio.wait_for(task, timeout_s)
    finally:
        if not task.done():
            task.cancel()
    answer.body = b"".join(chunks)
    return answer


@dataclass
class FuzzedApis:
    """The services on one event loop thread, and what the fuzzing saw of them."""

    portal: BlockingPortal
    apis: Apis
    observed: defaultdict[tuple[str, str], Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """(service, operation, e.g. "GET /companies") → how often each status was answered."""
    requests: int = 0
    seconds: float = 0.0

    def send(
        self, service: str, case: Case, *, headers: Mapping[str, str] | None = None
    ) -> tuple[Response, dict[str, Any]]:
        """Send a generated case to one service; the answer as schemathesis validates it, and what was sent."""
        kwargs = case.as_transport_kwargs(base_url=f"http://{service}", headers=dict(headers or self.credentials()))
        names = ("method", "url", "headers", "files", "data", "params", "cookies", "json", "auth")
        prepared = requests.Request(**{k: kwargs[k] for k in names if k in kwargs}).prepare()
        start = time.perf_counter()
        answer = self.portal.call(call_asgi, self.apis.apps[service], prepared)
        elapsed = time.perf_counter() - start
        self.requests += 1
        self.seconds += elapsed
        self.observed[(service, case.operation.label)][answer.status] += 1
        merged: dict[str, list[str]] = defaultdict(list)
        for name, value in answer.headers:
            merged[name].append(value)
        response = Response(
            status_code=answer.status,
            headers=merged,
            content=answer.body,
            request=prepared,
            elapsed=elapsed,
            verify=False,
            stream_cut_short=answer.cut_short,
        )
        return response, kwargs

    @staticmethod
    def credentials() -> dict[str, str]:
        """The admin token, and the internal secret for the one route that takes it (token introspection)."""
        return {**admin_headers(), INTERNAL_TOKEN_HEADER: AuthSettings().internal_secret}


@contextmanager
def fuzzed_services(databases: Databases) -> Iterator[FuzzedApis]:
    """The services in-process on PostgreSQL, their event loop on a thread of its own.

    The call watcher reads a local replay of the portal, so ``POST /calls/poll`` really polls.
    """
    with (
        run_replay_server() as portal_replay,
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(five_services(databases, portal_url=portal_replay.endpoint)) as apis,
    ):
        yield FuzzedApis(portal, apis)
