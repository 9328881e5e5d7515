"""The HTTP side every service shares: app factory, health, contracts, pagination, the runner."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from shared import api_docs
from shared.auth import AuthGuard, close_when_stopped
from shared.limits import BodySizeLimit, EventTooLarge
from shared.ops import router as ops_router
from shared.outbox_admin import router as outbox_admin_router
from shared.paging import Page, PageDep, PageParams
from shared.published_contracts import contracts_router, publish_openapi_31
from shared.runtime import ServiceRuntime
from shared.validation import guard_input

log = logging.getLogger(__name__)


def create_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    auth: AuthGuard | None = None,
) -> FastAPI:
    """A FastAPI app whose lifespan runs the service runtime; OpenAPI at /docs.

    ``auth`` authenticates the routes' ``shared.auth`` dependencies (without it they answer 503).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            yield

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        # Every route: control characters refused and JSON bodies only as JSON (shared.validation).
        dependencies=[Depends(guard_input)],
    )
    app.state.runtime = runtime
    if auth is not None:
        app.state.auth = auth
        runtime.background(lambda stop: close_when_stopped(auth, stop))
    for router in (*routers, ops_router, outbox_admin_router):
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.http_max_body_bytes)

    @app.exception_handler(EventTooLarge)
    async def event_too_large(_: Request, exc: EventTooLarge) -> JSONResponse:
        # Raised by UnitOfWork.emit before anything is committed: nothing was written.
        issue = {
            "type": "entity_too_large",
            "loc": ["body", exc.field],
            "msg": f"the result would be {exc.size} bytes as an event, over the {exc.limit}-byte limit: "
            f"shorten {exc.field} (docs/limits.md)",
            "ctx": {"limit": exc.limit, "size": exc.size},
        }
        return JSONResponse({"detail": [issue]}, status_code=413)

    @app.get("/healthz", tags=["operations"], summary="200 only when the database and Kafka answer")
    async def healthz() -> JSONResponse:
        ok, checks = await runtime.health()
        return JSONResponse(checks, status_code=200 if ok else 503)

    app.include_router(contracts_router())
    publish_openapi_31(app)

    # Every operation documents the 4xx the shared machinery answers on it (shared.api_docs).
    api_docs.install(app, service=runtime.name)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz")
    return app


def server_config(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """How every service is served. uvicorn's own proxy-header handling is off: it would believe
    X-Forwarded-For from 127.0.0.1 by default, and the services decide whom to believe themselves
    (``BONDGENOOT_TRUSTED_PROXIES``, shared/client_address.py)."""
    return uvicorn.Config(app, host=host, port=port, proxy_headers=False, **{"log_level": "warning", **options})


__all__ = ["Page", "PageDep", "PageParams", "create_app", "serve", "server_config"]


def serve(app: FastAPI, runtime: ServiceRuntime) -> None:
    """Run the service until SIGINT/SIGTERM; exit non-zero if a consumer halted."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {runtime.name} %(levelname)s %(name)s: %(message)s")
    config = server_config(app, host=runtime.settings.http_host, port=runtime.settings.http_port, lifespan="on")
    server = uvicorn.Server(config)

    def halt(reason: str) -> None:
        log.critical("stopping %s: %s", runtime.name, reason)
        server.should_exit = True

    runtime.on_halt = halt
    asyncio.run(server.serve())
    if runtime.halt_reason:
        sys.exit(3)
