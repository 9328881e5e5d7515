"""HTTP routes of the matching service."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status

from services.matching import domain
from shared.outbox import UnitOfWorkFactory

router = APIRouter(tags=["suggestions"])

TargetType = Literal["project", "call"]


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


@router.get("/suggestions/{target_type}/{target_id}")
async def get_suggestions(target_type: TargetType, target_id: str, request: Request) -> dict[str, Any]:
    """The latest ranked, explained suggestions for a project or call."""
    async with _uow(request)() as uow:
        found = await domain.get_suggestions(uow, target_type=target_type, target_id=target_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no suggestions for this target (yet)")
    return {
        "target_type": target_type,
        "target_id": target_id,
        "algorithm_version": found.algorithm_version,
        "computed_at": found.computed_at,
        "suggestions": found.suggestions,
    }


@router.get("/consortia/{target_type}/{target_id}")
async def get_consortia(target_type: TargetType, target_id: str, request: Request) -> dict[str, Any]:
    """Up to three whole consortia that satisfy the programme's rules, with what each member covers."""
    async with _uow(request)() as uow:
        found = await domain.get_suggestions(uow, target_type=target_type, target_id=target_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no proposals for this target (yet)")
    return {
        "target_type": target_type,
        "target_id": target_id,
        "algorithm_version": found.algorithm_version,
        "computed_at": found.computed_at,
        "proposals": found.consortia,
    }
