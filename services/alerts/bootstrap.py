"""Composition root of the alerts service: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts import domain
from services.alerts.api import router
from services.alerts.delivery import DeliveryService, delivery_topics
from services.alerts.delivery_api import router as delivery_router
from services.alerts.delivery_models import DELIVERY_TABLES
from services.alerts.models import Alert, Subscription
from services.alerts.settings import AlertsSettings
from services.alerts.stream import StreamHub
from shared.auth import AuthGuard
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import SuggestionsComputed
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "alerts"
SUGGESTIONS_GROUP = "alerts.suggestions"


def build(settings: AlertsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or AlertsSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        tables=[Subscription, Alert, *DELIVERY_TABLES],
        extra_topics=delivery_topics(len(settings.retry_delays_s)),
    )
    runtime.consumer(
        SUGGESTIONS_GROUP,
        topics=[SUGGESTIONS_TOPIC],
        handlers={SuggestionsComputed.event_type: domain.on_suggestions_computed},
        # >1: partitions in parallel, each in order (one target's suggestions stay ordered); raising
        # alerts mostly waits on the database, and one worker capped a process near 30 alerts/s.
        workers=settings.suggestion_workers,
    )
    delivery = DeliveryService(settings, runtime.uow)
    delivery.register(runtime)  # delivery + retry consumers, digest loop (services/alerts/README.md)
    stream = StreamHub()
    runtime.uow.on_commit(stream.notify)
    app = create_app(
        runtime,
        title="Bondgenoot alerts",
        description=(
            "Companies' alert subscriptions and their inbox. Consumes suggestions.v1; publishes alerts.v1 "
            "(one alert per company and target) and delivers alerts by e-mail, webhook and a live stream."
        ),
        routers=[router, delivery_router],
        auth=AuthGuard.for_service(settings),
    )
    app.state.alert_delivery = delivery
    app.state.alert_stream = stream
    return app, runtime
