"""Project use cases. They change the session and emit events; the unit of work commits."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from services.projects.models import (
    PRIVATE_FIELDS,
    Project,
    ProjectConsortia,
    ProjectCreate,
    ProjectSuggestions,
    ProjectUpdate,
)
from shared.events.base import CloudEvent
from shared.events.projects import ProjectClosed, ProjectPosted, ProjectUpdated
from shared.events.suggestions import ConsortiumProposed, SuggestionsComputed
from shared.outbox import UnitOfWork, as_utc, utcnow

log = logging.getLogger(__name__)


class ProjectNotFound(LookupError):
    pass


class ProjectClosedError(ValueError):
    """The project is closed: it can no longer be changed."""


async def post_project(uow: UnitOfWork, *, data: ProjectCreate) -> Project:
    """Store a new open project and emit project.posted."""
    project = Project(**data.model_dump(), status="open")
    uow.session.add(project)
    uow.emit(ProjectPosted(project=project.public_data()), subject=project.id)
    return project


async def get_project_or_raise(uow: UnitOfWork, *, project_id: str) -> Project:
    project = await uow.session.get(Project, project_id)
    if project is None:
        raise ProjectNotFound(project_id)
    return project


async def update_project(uow: UnitOfWork, *, project_id: str, data: ProjectUpdate) -> Project:
    """Apply a partial update; emit project.updated naming the public fields that really changed.

    A change to private fields only (the contact e-mail) is stored but emits nothing: the public
    projection that integrators see did not change.
    """
    project = await get_project_or_raise(uow, project_id=project_id)
    if project.status == "closed":
        raise ProjectClosedError(f"project {project_id} is closed")
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    changed = sorted(k for k, v in changes.items() if getattr(project, k) != v)
    if not changed:
        return project
    for key in changed:
        setattr(project, key, changes[key])
    project.updated_at = utcnow()
    uow.session.add(project)
    public_changes = [k for k in changed if k not in PRIVATE_FIELDS]
    if public_changes:
        uow.emit(ProjectUpdated(project=project.public_data(), changed_fields=public_changes), subject=project.id)
    return project


async def close_project(uow: UnitOfWork, *, project_id: str) -> Project:
    """Close a project and emit project.closed; closing a closed project changes nothing."""
    project = await get_project_or_raise(uow, project_id=project_id)
    if project.status == "closed":
        return project
    now = utcnow()
    project.status = "closed"
    project.closed_at = now
    project.updated_at = now
    uow.session.add(project)
    uow.emit(ProjectClosed(project_id=project.id), subject=project.id)
    return project


async def list_projects(
    uow: UnitOfWork, *, status: str | None, limit: int, offset: int, institute: str | None = None
) -> tuple[list[Project], int]:
    query = select(Project)
    if status:
        query = query.where(Project.status == status)
    if institute:
        query = query.where(Project.institute == institute)
    total = (await uow.session.exec(select(func.count()).select_from(query.subquery()))).one()
    ordered = query.order_by(col(Project.created_at).desc(), col(Project.id)).limit(limit).offset(offset)
    rows = (await uow.session.exec(ordered)).all()
    return list(rows), total


async def latest_suggestions(uow: UnitOfWork, *, project_id: str) -> ProjectSuggestions | None:
    await get_project_or_raise(uow, project_id=project_id)
    return await uow.session.get(ProjectSuggestions, project_id)


async def latest_consortia(uow: UnitOfWork, *, project_id: str) -> ProjectConsortia | None:
    await get_project_or_raise(uow, project_id=project_id)
    return await uow.session.get(ProjectConsortia, project_id)


async def insight_version(uow: UnitOfWork, *, project_id: str) -> str:
    """When the stored suggestions and proposals last changed ("" before the first): what a stream watches."""
    suggestions = await uow.session.get(ProjectSuggestions, project_id)
    consortia = await uow.session.get(ProjectConsortia, project_id)
    stamps = [row.event_id if row is not None else "" for row in (suggestions, consortia)]
    return "|".join(stamps) if any(stamps) else ""


# --- consumer handlers (suggestions.v1); the shared consumer commits them with the inbox row ---


async def _known_project(uow: UnitOfWork, ce: CloudEvent, project_id: str) -> bool:
    if await uow.session.get(Project, project_id) is None:
        log.info("ignoring %s %s for unknown project %s", ce.type, ce.id, project_id)
        return False
    return True


async def on_suggestions_computed(uow: UnitOfWork, ce: CloudEvent, data: SuggestionsComputed) -> None:
    """Keep the latest suggestions per project; an older or equal ``computed_at`` is ignored."""
    if data.target_type != "project" or not await _known_project(uow, ce, data.target_id):
        return
    computed_at = as_utc(data.computed_at)
    stored = await uow.session.get(ProjectSuggestions, data.target_id)
    if stored is not None and as_utc(stored.computed_at) >= computed_at:
        log.info("ignoring %s %s: not newer than the stored suggestions", ce.type, ce.id)
        return
    row = stored or ProjectSuggestions(
        project_id=data.target_id,
        event_id=ce.id,
        algorithm_version="",
        computed_at=computed_at,
        suggestions=[],
    )
    row.event_id = ce.id
    row.algorithm_version = data.algorithm_version
    row.computed_at = computed_at
    row.suggestions = [s.model_dump(mode="json") for s in data.suggestions]
    row.received_at = utcnow()
    uow.session.add(row)


async def on_consortium_proposed(uow: UnitOfWork, ce: CloudEvent, data: ConsortiumProposed) -> None:
    """Keep the latest consortium proposals per project; an older or equal ``computed_at`` is ignored."""
    if data.target_type != "project" or not await _known_project(uow, ce, data.target_id):
        return
    computed_at = as_utc(data.computed_at)
    stored = await uow.session.get(ProjectConsortia, data.target_id)
    if stored is not None and as_utc(stored.computed_at) >= computed_at:
        log.info("ignoring %s %s: not newer than the stored proposals", ce.type, ce.id)
        return
    row = stored or ProjectConsortia(
        project_id=data.target_id, event_id=ce.id, algorithm_version="", computed_at=computed_at, proposals=[]
    )
    row.event_id = ce.id
    row.algorithm_version = data.algorithm_version
    row.computed_at = computed_at
    row.proposals = [p.model_dump(mode="json") for p in data.proposals]
    row.received_at = utcnow()
    uow.session.add(row)
