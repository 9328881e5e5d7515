"""Composition root of matching: settings → runtime → engine (index loaded at start) → consumers → app."""

from __future__ import annotations

from fastapi import FastAPI

from services.matching.api import router
from services.matching.domain import MatchingEngine
from services.matching.handlers import company_handlers, target_handlers
from services.matching.models import CompanyView, SuggestionSet, TargetView
from services.matching.settings import MatchingSettings
from shared.auth import AuthGuard
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "matching"


def build(settings: MatchingSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or MatchingSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[CompanyView, TargetView, SuggestionSet])
    engine = MatchingEngine(top_n=settings.top_n)
    # One consumer for all three topics: its records are handled one at a time, so a company
    # registered while a project is being ranked is either in that ranking or re-scored against it.
    runtime.consumer(
        "matching",
        topics=["companies.v1", "projects.v1", "calls.v1"],
        handlers={**company_handlers(engine), **target_handlers(engine)},
    )
    runtime.before_consuming(engine.load)
    app = create_app(
        runtime,
        title="Bondgenoot matching",
        description="Ranked, explained partner suggestions and consortium proposals. Publishes suggestions.v1.",
        routers=[router],
        auth=AuthGuard.for_service(settings),
    )
    app.state.engine = engine
    return app, runtime
