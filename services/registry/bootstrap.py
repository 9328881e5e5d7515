"""Composition root of the registry: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.api import router
from services.registry.models import Company
from services.registry.settings import RegistrySettings
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "registry"


def build(settings: RegistrySettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or RegistrySettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Company])
    app = create_app(
        runtime,
        title="Bondgenoot registry",
        description="Company capability profiles. Publishes companies.v1.",
        routers=[router],
    )
    return app, runtime
