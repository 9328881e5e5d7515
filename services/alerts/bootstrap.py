"""Composition root of the alerts service: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts import domain
from services.alerts.api import router
from services.alerts.models import Alert, Subscription
from services.alerts.settings import AlertsSettings
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import SuggestionsComputed
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "alerts"
SUGGESTIONS_GROUP = "alerts.suggestions"


def build(settings: AlertsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or AlertsSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Subscription, Alert])
    runtime.consumer(
        SUGGESTIONS_GROUP,
        topics=[SUGGESTIONS_TOPIC],
        handlers={SuggestionsComputed.event_type: domain.on_suggestions_computed},
    )
    app = create_app(
        runtime,
        title="Bondgenoot alerts",
        description=(
            "Companies' alert subscriptions and their inbox. Consumes suggestions.v1; publishes alerts.v1 "
            "(one alert per company and target)."
        ),
        routers=[router],
    )
    return app, runtime
