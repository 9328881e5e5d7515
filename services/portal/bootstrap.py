"""Composition root of the portal: settings → session store → service clients → templates → app.

The portal has no Kafka and no events of its own: it is a backend-for-frontend over the five
services' HTTP APIs, and its only table is its sessions (see ``sessions.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.portal import i18n
from services.portal.clients.base import api_spans, api_time_ms, client_address
from services.portal.clients.services import Services
from services.portal.security import SecurityHeaders
from services.portal.sessions import PortalSession, SessionStore
from services.portal.settings import PortalSettings
from services.portal.views import ROUTERS
from services.portal.web import EXCEPTION_HANDLERS, Portal, build_environment
from shared.client_address import IPNetwork, client_ip
from shared.db import Database
from shared.http import server_config
from shared.limits import BodySizeLimit
from shared.taxonomy import load_taxonomy
from shared.telemetry import configure_tracing

log = logging.getLogger(__name__)

NAME = "portal"
STATIC = Path(__file__).resolve().parent / "static"
PURGE_EVERY_S = 600.0


class RequestTiming:
    """Per request: the browser's address for the services, and ``Server-Timing`` (api, app) on the answer.

    ``app`` is the time until the response headers (for a page: the whole server-side render),
    ``api`` the part of it spent waiting for services; ``make bench-portal`` reads both.
    """

    def __init__(self, app: ASGIApp, *, proxies: tuple[IPNetwork, ...] = ()) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        spans: list[tuple[float, float]] = []
        spans_token = api_spans.set(spans)
        # The browser's address: the peer, or what a proxy named in BONDGENOOT_TRUSTED_PROXIES says.
        address = client_ip(HTTPConnection(scope), self.proxies) if scope.get("client") else None
        address_token = client_address.set(address)

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                total = (time.perf_counter() - started) * 1000
                headers = MutableHeaders(scope=message)
                headers["Server-Timing"] = f"api;dur={api_time_ms(spans):.2f}, app;dur={total:.2f}"
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            api_spans.reset(spans_token)
            client_address.reset(address_token)


async def _purge_sessions(store: SessionStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            removed = await store.purge_expired()
        except Exception:  # the next round tries again; expired sessions are refused on read anyway
            log.exception("purging expired sessions failed")
        else:
            if removed:
                log.info("purged %d expired sessions", removed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_EVERY_S)


def build(
    settings: PortalSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[FastAPI, Portal]:
    settings = settings or PortalSettings()
    configure_tracing(NAME, settings.telemetry)
    i18n.load_catalogues()
    db = Database(settings.database_url, tables=[PortalSession])
    store = SessionStore(db, secret=settings.secret, idle_s=settings.session_idle_s, max_s=settings.session_max_s)
    services = Services(
        settings.service_urls(),
        timeout_s=settings.api_timeout_s,
        internal_token=settings.internal_secret,
        transport=transport,
    )
    portal = Portal(settings, store, services, build_environment(), load_taxonomy())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.create_tables()
        stop = asyncio.Event()
        purger = asyncio.create_task(_purge_sessions(store, stop), name="portal-session-purge")
        try:
            yield
        finally:
            stop.set()
            await purger
            await services.aclose()
            await db.dispose()

    app = FastAPI(
        title="Bondgenoot portal",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(SecurityHeaders, hsts=settings.cookies_secure)
    # Forms are parsed into memory: refuse a body over HTTP_MAX_BODY_BYTES before reading it (docs/limits.md).
    app.add_middleware(BodySizeLimit, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(RequestTiming, proxies=settings.proxies)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,static")
    return app, portal


def serve(app: FastAPI, portal: Portal) -> None:
    """Run the portal until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s portal %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; URLs carry no tokens, but one line per call is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # server_config: uvicorn's own X-Forwarded-For handling off; BONDGENOOT_TRUSTED_PROXIES decides (RequestTiming).
    config = server_config(
        app,
        host=portal.settings.http_host,
        port=portal.settings.http_port,
        lifespan="on",
        # Live pages hold Server-Sent Event streams open: do not wait for them at shutdown.
        timeout_graceful_shutdown=2,
    )
    asyncio.run(uvicorn.Server(config).serve())
