"""Composition root of the alerts service: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts import domain, removal
from services.alerts.api import router
from services.alerts.confirmation import ConfirmationService, request_missing
from services.alerts.delivery import DeliveryService, delivery_topics
from services.alerts.delivery_api import router as delivery_router
from services.alerts.delivery_models import DELIVERY_TABLES
from services.alerts.links_api import router as links_router
from services.alerts.models import Alert, Subscription
from services.alerts.removal import COMPANIES_GROUP, RemovedCompany
from services.alerts.settings import AlertsSettings
from shared.auth import AuthGuard
from shared.events.companies import TOPIC as COMPANIES_TOPIC
from shared.events.companies import CompanyRemoved
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import SuggestionsComputed
from shared.http import create_app
from shared.live import StreamHub
from shared.runtime import ServiceRuntime

NAME = "alerts"
SUGGESTIONS_GROUP = "alerts.suggestions"


def build(settings: AlertsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or AlertsSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        tables=[Subscription, Alert, *DELIVERY_TABLES, RemovedCompany],
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
    # A company removed from the registry: its subscription, channels, secrets and deliveries go too.
    runtime.consumer(
        COMPANIES_GROUP,
        topics=[COMPANIES_TOPIC],
        handlers={CompanyRemoved.event_type: removal.on_company_removed},
    )
    delivery = DeliveryService(settings, runtime.uow)
    delivery.register(runtime)  # delivery + retry consumers, digest loop (services/alerts/README.md)
    # E-mail addresses confirm before they get alerts (services/alerts/confirmation.py).
    confirmations = ConfirmationService(settings, runtime.uow, delivery.mailer)
    runtime.before_consuming(request_missing)
    runtime.background(confirmations.run)
    stream = StreamHub(max_per_account=settings.stream_max_per_account)
    runtime.uow.on_commit(stream.notify)
    app = create_app(
        runtime,
        title="Bondgenoot alerts",
        description=(
            "Companies' alert subscriptions and their inbox. Consumes suggestions.v1 (and company removals "
            "from companies.v1); publishes alerts.v1 "
            "(one alert per company and target) and delivers alerts by e-mail, webhook and a live stream."
        ),
        routers=[router, delivery_router, links_router],
        auth=AuthGuard.for_service(settings),
    )
    app.state.alert_delivery = delivery
    app.state.alert_confirmations = confirmations
    app.state.alert_stream = stream
    return app, runtime
