"""Composition root of the projects service: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.projects import domain
from services.projects.api import router
from services.projects.models import Project, ProjectConsortia, ProjectSuggestions
from services.projects.settings import ProjectsSettings
from shared.auth import AuthGuard
from shared.events.base import CloudEvent
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import ConsortiumProposed, SuggestionsComputed
from shared.http import create_app
from shared.live import StreamHub
from shared.runtime import ServiceRuntime

NAME = "projects"
SUGGESTIONS_GROUP = "projects.suggestions"


def build(settings: ProjectsSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or ProjectsSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Project, ProjectSuggestions, ProjectConsortia])
    hub = StreamHub(max_per_account=settings.stream_max_per_account)

    async def wake_streams(_: CloudEvent) -> None:
        hub.notify()  # new suggestions or proposals are durable: open streams look again

    runtime.consumer(
        SUGGESTIONS_GROUP,
        topics=[SUGGESTIONS_TOPIC],
        handlers={
            SuggestionsComputed.event_type: domain.on_suggestions_computed,
            ConsortiumProposed.event_type: domain.on_consortium_proposed,
        },
        after_side_effects=wake_streams,
    )
    app = create_app(
        runtime,
        title="Bondgenoot projects",
        description=(
            "Research projects posted by institutes. Publishes projects.v1; keeps the latest "
            "suggestions and consortium proposals per project from suggestions.v1."
        ),
        routers=[router],
        auth=AuthGuard.for_service(settings),
    )
    app.state.stream_hub = hub
    return app, runtime
