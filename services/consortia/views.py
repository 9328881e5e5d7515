"""Read models kept from other services' events: company profiles, targets and their rankings.

Handlers of the shared consumer: it commits each with its inbox row, so a redelivered event
changes nothing. Records of one company, project or call arrive in order (the key is its id), so
the latest event is the latest version.
"""

from __future__ import annotations

from services.consortia.models import CompanyView, TargetRanking, TargetView
from shared.events.base import CloudEvent
from shared.events.calls import CallClosed, CallData, CallPublished, CallUpdated
from shared.events.companies import CompanyProfileData, CompanyRegistered, CompanyRemoved, CompanyUpdated
from shared.events.projects import ProjectClosed, ProjectData, ProjectPosted, ProjectUpdated
from shared.events.suggestions import SuggestionsComputed
from shared.outbox import UnitOfWork, as_utc, utcnow


async def _upsert_company(uow: UnitOfWork, company: CompanyProfileData) -> None:
    view = await uow.session.get(CompanyView, company.id) or CompanyView(company_id=company.id, name="", profile={})
    view.name = company.name
    view.profile = company.model_dump(mode="json")
    view.updated_at = utcnow()
    uow.session.add(view)


async def on_company_registered(uow: UnitOfWork, ce: CloudEvent, data: CompanyRegistered) -> None:
    await _upsert_company(uow, data.company)


async def on_company_updated(uow: UnitOfWork, ce: CloudEvent, data: CompanyUpdated) -> None:
    await _upsert_company(uow, data.company)


async def on_company_removed(uow: UnitOfWork, ce: CloudEvent, data: CompanyRemoved) -> None:
    """A removed company's facts are gone: a draft it was in fails ``known_members`` until it is removed."""
    view = await uow.session.get(CompanyView, data.company_id)
    if view is not None:
        await uow.session.delete(view)


async def _upsert_target(uow: UnitOfWork, target_type: str, target_id: str, view: TargetView) -> None:
    stored = await uow.session.get(TargetView, (target_type, target_id))
    if stored is None:
        uow.session.add(view)
        return
    stored.title, stored.programme, stored.status, stored.facts = view.title, view.programme, view.status, view.facts
    stored.updated_at = utcnow()
    uow.session.add(stored)


def project_view(project: ProjectData) -> TargetView:
    return TargetView(
        target_type="project",
        target_id=project.id,
        title=project.title,
        programme=project.programme,
        status=project.status,
        facts=project.model_dump(mode="json"),
    )


def call_view(call: CallData) -> TargetView:
    facts = call.model_dump(mode="json")
    facts["summary"] = ""
    return TargetView(
        target_type="call",
        target_id=call.id,
        title=call.title,
        programme=call.programme,
        status=call.status,
        facts=facts,
    )


async def on_project_posted(uow: UnitOfWork, ce: CloudEvent, data: ProjectPosted) -> None:
    await _upsert_target(uow, "project", data.project.id, project_view(data.project))


async def on_project_updated(uow: UnitOfWork, ce: CloudEvent, data: ProjectUpdated) -> None:
    await _upsert_target(uow, "project", data.project.id, project_view(data.project))


async def _close(uow: UnitOfWork, target_type: str, target_id: str) -> None:
    stored = await uow.session.get(TargetView, (target_type, target_id))
    if stored is not None:
        stored.status = "closed"
        stored.updated_at = utcnow()
        uow.session.add(stored)


async def on_project_closed(uow: UnitOfWork, ce: CloudEvent, data: ProjectClosed) -> None:
    await _close(uow, "project", data.project_id)


async def on_call_published(uow: UnitOfWork, ce: CloudEvent, data: CallPublished) -> None:
    await _upsert_target(uow, "call", data.call.id, call_view(data.call))


async def on_call_updated(uow: UnitOfWork, ce: CloudEvent, data: CallUpdated) -> None:
    await _upsert_target(uow, "call", data.call.id, call_view(data.call))


async def on_call_closed(uow: UnitOfWork, ce: CloudEvent, data: CallClosed) -> None:
    await _close(uow, "call", data.call_id)


async def on_suggestions_computed(uow: UnitOfWork, ce: CloudEvent, data: SuggestionsComputed) -> None:
    """Keep the latest ranking per target (an older or equal ``computed_at`` is ignored)."""
    computed_at = as_utc(data.computed_at)
    stored = await uow.session.get(TargetRanking, (data.target_type, data.target_id))
    if stored is not None and as_utc(stored.computed_at) >= computed_at:
        return
    row = stored or TargetRanking(
        target_type=data.target_type, target_id=data.target_id, computed_at=computed_at, company_ids=[]
    )
    row.computed_at = computed_at
    row.company_ids = [s.company_id for s in sorted(data.suggestions, key=lambda s: s.rank)]
    uow.session.add(row)
