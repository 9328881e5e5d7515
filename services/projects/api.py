"""HTTP routes of the projects service: thin adapters from requests to domain functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import Field

from services.projects import domain
from services.projects.models import (
    ConsortiaPublic,
    Project,
    ProjectCreate,
    ProjectPublic,
    ProjectStatus,
    ProjectUpdate,
    SuggestionsPublic,
)
from shared.api_docs import errors
from shared.auth import Access, OptionalPrincipal, PresentedToken, Principal, forbidden, guard, require, token_recheck
from shared.http import Page, PageDep
from shared.live import Recheck, StreamHub, stream_slot
from shared.outbox import UnitOfWorkFactory
from shared.validation import EntityIdPath

router = APIRouter(tags=["projects"])

NOT_FOUND = "project not found"


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


class ProjectRead(ProjectPublic):
    contact_email: str | None = Field(  # type: ignore[assignment]
        default=None,
        exclude_if=lambda v: v is None,
        description="Only shown to the institute that posted the project and to admins",
    )


def _public(project: Project, principal: Principal | None) -> ProjectRead:
    read = ProjectRead.model_validate(project, from_attributes=True)
    if principal is None or not (principal.is_admin or principal.owns_institute(project.institute)):
        read.contact_email = None  # contact details are private
    return read


async def _owns_project(request: Request, principal: Principal) -> bool | None:
    """A project belongs to the institute it names: institutes may post and rename only to their own name."""
    async with _uow(request)() as uow:
        project = await uow.session.get(Project, str(request.path_params["project_id"]))
        return None if project is None else principal.owns_institute(project.institute)


def _own_institute_only(principal: Principal | None, institute: str | None) -> None:
    if principal is not None and principal.role == "institute" and institute is not None:
        if institute != principal.institute:
            raise forbidden(f"an institute account posts projects for its own institute only ({principal.institute!r})")


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectRead)
async def post_project(
    body: ProjectCreate,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.INSTITUTE))],
) -> ProjectRead:
    _own_institute_only(principal, body.institute)
    async with _uow(request)() as uow:
        project = await domain.post_project(uow, data=body)
        await uow.commit()
        return _public(project, principal)


@router.get("/projects/{project_id}", response_model=ProjectRead, responses=errors(404))
async def get_project(project_id: EntityIdPath, request: Request, principal: OptionalPrincipal) -> ProjectRead:
    async with _uow(request)() as uow:
        try:
            return _public(await domain.get_project_or_raise(uow, project_id=project_id), principal)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc


@router.patch("/projects/{project_id}", response_model=ProjectRead, responses=errors(404, 409))
async def update_project(
    project_id: EntityIdPath,
    body: ProjectUpdate,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.OWN_PROJECT, owner=_owns_project))],
) -> ProjectRead:
    _own_institute_only(principal, body.institute)
    async with _uow(request)() as uow:
        try:
            project = await domain.update_project(uow, project_id=project_id, data=body)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        except domain.ProjectClosedError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return _public(project, principal)


@router.post("/projects/{project_id}/close", response_model=ProjectRead, responses=errors(404))
async def close_project(
    project_id: EntityIdPath,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.OWN_PROJECT, owner=_owns_project))],
) -> ProjectRead:
    async with _uow(request)() as uow:
        try:
            project = await domain.close_project(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        await uow.commit()
        return _public(project, principal)


@router.get("/projects", response_model=Page[ProjectRead])
async def list_projects(
    request: Request,
    page: PageDep,
    principal: OptionalPrincipal,
    status_: Annotated[ProjectStatus | None, Query(alias="status")] = None,
    institute: Annotated[str | None, Query(max_length=200, description="Only this institute's projects")] = None,
) -> Page[ProjectRead]:
    async with _uow(request)() as uow:
        rows, total = await domain.list_projects(
            uow, status=status_, institute=institute, limit=page.limit, offset=page.offset
        )
        return Page(items=[_public(p, principal) for p in rows], total=total, limit=page.limit, offset=page.offset)


_insight = [Depends(require(Access.PROJECT_INSIGHT, owner=_owns_project))]
InsightCaller = Annotated[Principal | None, Depends(require(Access.PROJECT_INSIGHT, owner=_owns_project))]


@router.get(
    "/projects/{project_id}/suggestions",
    response_model=SuggestionsPublic,
    tags=["suggestions"],
    dependencies=_insight,
    responses=errors(404),
)
async def project_suggestions(project_id: EntityIdPath, request: Request) -> SuggestionsPublic:
    """The latest partner suggestions computed for this project (an empty list until there are any)."""
    async with _uow(request)() as uow:
        try:
            row = await domain.latest_suggestions(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        if row is None:
            return SuggestionsPublic(project_id=project_id)
        return SuggestionsPublic.model_validate(row, from_attributes=True)


@router.get(
    "/projects/{project_id}/consortia",
    response_model=ConsortiaPublic,
    tags=["suggestions"],
    dependencies=_insight,
    responses=errors(404),
)
async def project_consortia(project_id: EntityIdPath, request: Request) -> ConsortiaPublic:
    """The latest consortium proposals for this project (an empty list until there are any)."""
    async with _uow(request)() as uow:
        try:
            row = await domain.latest_consortia(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        if row is None:
            return ConsortiaPublic(project_id=project_id)
        return ConsortiaPublic.model_validate(row, from_attributes=True)


async def _insight_version_or_404(project_id: EntityIdPath, request: Request) -> str:
    """The project's insight version when its stream opens.

    A dependency, not the stream's first step: once the event stream runs, its answer (200) has been
    started, and a 404 raised there became a 500 (found by tests/integration/test_documented_refusals.py).
    """
    async with _uow(request)() as uow:
        try:
            seen = await domain.insight_version(uow, project_id=project_id)
            await domain.get_project_or_raise(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
    return seen


async def _stream_slot(request: Request, principal: InsightCaller) -> AsyncIterator[None]:
    """One of the account's ``PROJECTS_STREAM_MAX_PER_ACCOUNT`` stream slots, held while the stream is open."""
    with stream_slot(request.app.state.stream_hub, principal):
        yield


@router.get(
    "/projects/{project_id}/suggestions/stream",
    response_class=EventSourceResponse,
    tags=["suggestions"],
    responses=errors(404, 429, d429="The account has its maximum of open streams"),
)
async def project_insight_stream(
    project_id: EntityIdPath,
    request: Request,
    principal: InsightCaller,
    token: PresentedToken,
    seen: Annotated[str, Depends(_insight_version_or_404)],
    _slot: Annotated[None, Depends(_stream_slot)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``ready``, then ``changed`` whenever newer suggestions or proposals are stored.

    It carries no data of its own: read ``…/suggestions`` and ``…/consortia`` on ``changed``. Wakes on
    this process's commits and re-checks every ``PROJECTS_STREAM_POLL_INTERVAL`` seconds (replicas).
    The token is checked again every ``AUTH_CACHE_TTL`` seconds: after a revocation the stream sends
    ``event: closed`` with the reason and ends.
    """
    uow_factory = _uow(request)
    hub: StreamHub = request.app.state.stream_hub
    interval = request.app.state.runtime.settings.stream_poll_interval_s
    recheck = Recheck(token_recheck(request, principal, token), max(1.0, guard(request).token_ttl_s))
    yield ServerSentEvent(event="ready", data={"version": seen}, retry=2000)
    while True:
        if (closing := await recheck.closing()) is not None:
            yield closing
            return
        version_before = hub.version
        async with uow_factory() as uow:
            current = await domain.insight_version(uow, project_id=project_id)
        if current != seen:
            seen = current
            yield ServerSentEvent(event="changed", data={"version": current})
        await hub.wait(version_before, recheck.wait_at_most(interval))
