"""Composition root of the call watcher: settings → runtime (db, outbox, Kafka, poller) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.calls import use_cases
from services.calls.api import router
from services.calls.models import Call, CallSuggestions
from services.calls.poller import CallPoller
from services.calls.settings import CallsSettings
from shared.auth import AuthGuard
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import SuggestionsComputed
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "calls"


def build(settings: CallsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or CallsSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Call, CallSuggestions])
    runtime.consumer(
        "calls.suggestions",
        topics=[SUGGESTIONS_TOPIC],
        handlers={SuggestionsComputed.event_type: use_cases.record_suggestions},
    )
    poller = CallPoller(
        runtime.uow,
        settings.portal_config(),
        interval_s=settings.poll_interval_s,
        retry_s=settings.poll_retry_s,
        poll_on_start=settings.poll_on_start,
    )
    runtime.background(poller.run)
    runtime.report("poller", poller.health)
    app = create_app(
        runtime,
        title="Bondgenoot calls",
        description=(
            "The call watcher: polls the EU Funding & Tenders Portal for EDF topics and publishes "
            "calls.v1; keeps the latest partner suggestions per call from suggestions.v1."
        ),
        routers=[router],
        auth=AuthGuard.for_service(settings),
    )
    # The API's poll and the scheduled one share this poller and its lock: never two at once.
    app.state.poller = poller
    return app, runtime
