"""Every service's HTTP API in-process, each on its own PostgreSQL database (no broker needed).

Writes land in the outbox; nothing publishes them (the relay is not started). Tokens of other
services are introspected at the in-process registry, as deployed but without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from services.alerts.bootstrap import build as build_alerts
from services.alerts.settings import AlertsSettings
from services.calls.bootstrap import build as build_calls
from services.calls.settings import CallsSettings
from services.consortia.bootstrap import build as build_consortia
from services.consortia.settings import ConsortiaSettings
from services.matching.bootstrap import build as build_matching
from services.matching.settings import MatchingSettings
from services.projects.bootstrap import build as build_projects
from services.projects.settings import ProjectsSettings
from services.registry.bootstrap import build as build_registry
from services.registry.settings import RegistrySettings
from shared.auth import AuthGuard, AuthSettings, FailureLimiter, RegistryIntrospection
from shared.runtime import ServiceRuntime
from tests.infra import Databases, admin_headers

SERVICES = ("registry", "projects", "calls", "matching", "alerts", "consortia")


@dataclass
class Apis:
    apps: dict[str, FastAPI] = field(default_factory=dict)
    runtimes: dict[str, ServiceRuntime] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    """Clients that send the admin token."""


def build(
    service: str, database_url: str, *, portal_url: str = "http://127.0.0.1:9/"
) -> tuple[FastAPI, ServiceRuntime]:
    """One service's app and runtime on the given database (built only: nothing connects yet)."""
    if service == "registry":
        return build_registry(RegistrySettings(database_url=database_url))
    if service == "projects":
        return build_projects(ProjectsSettings(database_url=database_url))
    if service == "calls":
        return build_calls(
            CallsSettings(
                database_url=database_url,
                ft_search_url=portal_url,
                poll_on_start=False,
                portal_max_attempts=1,
                portal_backoff_base_s=0,
            )
        )
    if service == "matching":
        return build_matching(MatchingSettings(database_url=database_url))
    if service == "alerts":
        return build_alerts(AlertsSettings(database_url=database_url))
    if service == "consortia":
        return build_consortia(ConsortiaSettings(database_url=database_url))
    raise ValueError(f"unknown service {service!r}")


def openapi_documents() -> dict[str, dict[str, Any]]:
    """Every service's OpenAPI document, from apps built on an in-memory database that is never opened."""
    return {service: build(service, "sqlite:///:memory:")[0].openapi() for service in SERVICES}


@asynccontextmanager
async def five_services(databases: Databases, *, portal_url: str = "http://127.0.0.1:9/") -> AsyncIterator[Apis]:
    built = {service: build(service, databases.create(service), portal_url=portal_url) for service in SERVICES}
    apis = Apis(apps={n: app for n, (app, _) in built.items()}, runtimes={n: rt for n, (_, rt) in built.items()})
    internal = AuthSettings().internal_secret
    registry_transport = httpx.ASGITransport(apis.apps["registry"])
    for name, app in apis.apps.items():
        guard: AuthGuard = app.state.auth
        guard.limiter = FailureLimiter(1_000_000)  # fuzzed tokens must not lock the test client out
        if name != "registry":
            guard.resolver = RegistryIntrospection("http://registry", internal, transport=registry_transport)
        await apis.runtimes[name].db.create_tables()
        apis.clients[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url=f"http://{name}", headers=admin_headers()
        )
    try:
        yield apis
    finally:
        for name, client in apis.clients.items():
            await client.aclose()
            await apis.apps[name].state.auth.aclose()
            await apis.runtimes[name].db.dispose()
