"""Composition root of the consortia service: settings → runtime (db, outbox, Kafka) → HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.consortia import views
from services.consortia.api import router
from services.consortia.models import CompanyView, Consortium, Invitation, TargetRanking, TargetView
from services.consortia.settings import ConsortiaSettings
from shared.auth import AuthGuard
from shared.events import calls, companies, projects, suggestions
from shared.http import create_app
from shared.runtime import ServiceRuntime

NAME = "consortia"
COMPANIES_GROUP = "consortia.companies"
TARGETS_GROUP = "consortia.targets"
SUGGESTIONS_GROUP = "consortia.suggestions"


def build(settings: ConsortiaSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    settings = settings or ConsortiaSettings()
    runtime = ServiceRuntime(NAME, settings, tables=[Consortium, Invitation, CompanyView, TargetView, TargetRanking])
    runtime.consumer(
        COMPANIES_GROUP,
        topics=[companies.TOPIC],
        handlers={
            companies.CompanyRegistered.event_type: views.on_company_registered,
            companies.CompanyUpdated.event_type: views.on_company_updated,
            companies.CompanyRemoved.event_type: views.on_company_removed,
        },
    )
    runtime.consumer(
        TARGETS_GROUP,
        topics=[projects.TOPIC, calls.TOPIC],
        handlers={
            projects.ProjectPosted.event_type: views.on_project_posted,
            projects.ProjectUpdated.event_type: views.on_project_updated,
            projects.ProjectClosed.event_type: views.on_project_closed,
            calls.CallPublished.event_type: views.on_call_published,
            calls.CallUpdated.event_type: views.on_call_updated,
            calls.CallClosed.event_type: views.on_call_closed,
        },
    )
    runtime.consumer(
        SUGGESTIONS_GROUP,
        topics=[suggestions.TOPIC],
        handlers={suggestions.SuggestionsComputed.event_type: views.on_suggestions_computed},
    )
    return (
        create_app(
            runtime,
            title="Bondgenoot consortia",
            description=(
                "Consortium drafts: invitations, live rule checks on the accepted roster, coverage and gaps, "
                "outcomes. Publishes consortia.v1 (private); keeps companies, targets and rankings from "
                "companies.v1, projects.v1, calls.v1 and suggestions.v1."
            ),
            routers=[router],
            auth=AuthGuard.for_service(settings),
        ),
        runtime,
    )
