"""Composition root of matching: settings → runtime → index and its companies feed → targets consumer → app.

Any number of replicas may run (services/matching/README.md, "Running as several replicas"): each
reads all of companies.v1 into its own index; the ``matching`` consumer group splits the targets.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.matching.api import router
from services.matching.engine import MatchingEngine
from services.matching.handlers import target_handlers
from services.matching.index_feed import IndexFeed
from services.matching.models import RankingInput, SuggestionSet, TargetView
from services.matching.ownership import TARGET_TOPICS, TargetOwnership
from services.matching.settings import MatchingSettings
from shared.auth import AuthGuard
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "matching"
TARGETS_GROUP = "matching"


def build(settings: MatchingSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or MatchingSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[TargetView, SuggestionSet, RankingInput])
    engine = MatchingEngine(top_n=settings.top_n)
    feed = IndexFeed(engine=engine, runtime=runtime)
    ownership = TargetOwnership(engine=engine, feed=feed, runtime=runtime)
    engine.owns = ownership.owns
    runtime.background(feed.run)
    # The targets' group: each of its records is ranked inside engine.turn(), never beside a company change.
    runtime.consumer(
        TARGETS_GROUP,
        topics=list(TARGET_TOPICS.values()),
        handlers=target_handlers(engine),
        listener=ownership,
        serialize=engine.turn,
    )
    runtime.report("index", feed.describe)
    runtime.report("targets", ownership.describe)
    app = create_app(
        runtime,
        title="Bondgenoot matching",
        description="Ranked, explained partner suggestions and consortium proposals. Publishes suggestions.v1.",
        routers=[router],
        auth=AuthGuard.for_service(settings),
    )
    app.state.engine = engine
    return app, runtime
