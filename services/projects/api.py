"""HTTP routes of the projects service: thin adapters from requests to domain functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

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
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory

router = APIRouter(tags=["projects"])

NOT_FOUND = "project not found"


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _public(project: Project) -> ProjectPublic:
    return ProjectPublic.model_validate(project, from_attributes=True)


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic)
async def post_project(body: ProjectCreate, request: Request) -> ProjectPublic:
    async with _uow(request)() as uow:
        project = await domain.post_project(uow, data=body)
        await uow.commit()
        return _public(project)


@router.get("/projects/{project_id}", response_model=ProjectPublic)
async def get_project(project_id: str, request: Request) -> ProjectPublic:
    async with _uow(request)() as uow:
        try:
            return _public(await domain.get_project_or_raise(uow, project_id=project_id))
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc


@router.patch("/projects/{project_id}", response_model=ProjectPublic)
async def update_project(project_id: str, body: ProjectUpdate, request: Request) -> ProjectPublic:
    async with _uow(request)() as uow:
        try:
            project = await domain.update_project(uow, project_id=project_id, data=body)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        except domain.ProjectClosedError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return _public(project)


@router.post("/projects/{project_id}/close", response_model=ProjectPublic)
async def close_project(project_id: str, request: Request) -> ProjectPublic:
    async with _uow(request)() as uow:
        try:
            project = await domain.close_project(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        await uow.commit()
        return _public(project)


@router.get("/projects", response_model=Page[ProjectPublic])
async def list_projects(
    request: Request,
    page: PageDep,
    status_: Annotated[ProjectStatus | None, Query(alias="status")] = None,
) -> Page[ProjectPublic]:
    async with _uow(request)() as uow:
        rows, total = await domain.list_projects(uow, status=status_, limit=page.limit, offset=page.offset)
        return Page(items=[_public(p) for p in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/projects/{project_id}/suggestions", response_model=SuggestionsPublic, tags=["suggestions"])
async def project_suggestions(project_id: str, request: Request) -> SuggestionsPublic:
    """The latest partner suggestions computed for this project (an empty list until there are any)."""
    async with _uow(request)() as uow:
        try:
            row = await domain.latest_suggestions(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        if row is None:
            return SuggestionsPublic(project_id=project_id)
        return SuggestionsPublic.model_validate(row, from_attributes=True)


@router.get("/projects/{project_id}/consortia", response_model=ConsortiaPublic, tags=["suggestions"])
async def project_consortia(project_id: str, request: Request) -> ConsortiaPublic:
    """The latest consortium proposals for this project (an empty list until there are any)."""
    async with _uow(request)() as uow:
        try:
            row = await domain.latest_consortia(uow, project_id=project_id)
        except domain.ProjectNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        if row is None:
            return ConsortiaPublic(project_id=project_id)
        return ConsortiaPublic.model_validate(row, from_attributes=True)
