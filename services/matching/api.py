"""HTTP routes of the matching service."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status

from services.matching import domain
from services.matching.models import TargetView
from shared.api_docs import errors
from shared.auth import Access, OptionalPrincipal, check
from shared.outbox import UnitOfWorkFactory
from shared.validation import TargetIdPath

TargetType = Literal["project", "call"]


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


async def _target_access(
    target_type: TargetType, target_id: TargetIdPath, request: Request, principal: OptionalPrincipal
) -> None:
    """A call's results: any account. A project's: the institute that posted it, integrators and admins.

    The project's institute comes from the read model (projects.v1), so no other service is asked.
    """
    if target_type == "call":
        check(Access.AUTHENTICATED, principal)
        return
    owns: bool | None = None
    if principal is not None and principal.role == "institute":
        async with _uow(request)() as uow:
            row = await uow.session.get(TargetView, (target_type, target_id))
            owns = None if row is None else principal.owns_institute(row.target.get("institute"))
    check(Access.PROJECT_INSIGHT, principal, owns=owns)


router = APIRouter(tags=["suggestions"], dependencies=[Depends(_target_access)])


async def _latest(
    request: Request, target_type: TargetType, target_id: str, *, field: str, what: str
) -> dict[str, Any]:
    """The latest stored result for a target, with one of its parts (suggestions or proposals)."""
    async with _uow(request)() as uow:  # read the row inside: leaving the unit of work expires it
        found = await domain.get_suggestions(uow, target_type=target_type, target_id=target_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} for this target (yet)")
        return {
            "target_type": target_type,
            "target_id": target_id,
            "algorithm_version": found.algorithm_version,
            "computed_at": found.computed_at,
            what: getattr(found, field),
        }


@router.get("/suggestions/{target_type}/{target_id}", responses=errors(404))
async def get_suggestions(target_type: TargetType, target_id: TargetIdPath, request: Request) -> dict[str, Any]:
    """The latest ranked, explained suggestions for a project or call."""
    return await _latest(request, target_type, target_id, field="suggestions", what="suggestions")


@router.get("/consortia/{target_type}/{target_id}", responses=errors(404))
async def get_consortia(target_type: TargetType, target_id: TargetIdPath, request: Request) -> dict[str, Any]:
    """Up to three whole consortia that satisfy the programme's rules, with what each member covers."""
    return await _latest(request, target_type, target_id, field="consortia", what="proposals")
