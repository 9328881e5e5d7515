"""Composition root of the registry: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.accounts import Account, AccountResolver, ApiToken
from services.registry.accounts_api import router as accounts_router
from services.registry.api import router
from services.registry.models import Company
from services.registry.settings import RegistrySettings
from shared.auth import AuthGuard
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "registry"


def build(settings: RegistrySettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or RegistrySettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Company, Account, ApiToken])
    # The registry owns the accounts: it resolves tokens in its own database, no introspection call.
    auth = AuthGuard.for_service(settings, resolver=AccountResolver(runtime.db))
    app = create_app(
        runtime,
        title="Bondgenoot registry",
        description=("Company capability profiles and the platform's accounts and API tokens. Publishes companies.v1."),
        routers=[router, accounts_router],
        auth=auth,
    )
    return app, runtime
