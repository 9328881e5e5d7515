"""HTTP routes of the call watcher: thin adapters from requests to use cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from services.calls import use_cases
from services.calls.domain.normalise import CallStatus
from services.calls.domain.portal import PortalUnavailable
from services.calls.models import Call, CallPublic, CallSuggestionsPublic
from services.calls.poller import CallPoller
from services.calls.use_cases import PollCounts
from shared.api_docs import errors
from shared.auth import Access, require
from shared.events.suggestions import SuggestionItem
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory
from shared.validation import DomainSlug, TopicIdPath

router = APIRouter(tags=["calls"])

RETRY_AFTER_S = 60


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _poller(request: Request) -> CallPoller:
    return request.app.state.poller  # type: ignore[no-any-return]


def _public(call: Call) -> CallPublic:
    return CallPublic.model_validate(call, from_attributes=True)


@router.post(
    "/calls/poll",
    response_model=PollCounts,
    summary="Poll the Funding & Tenders Portal now",
    responses={503: {"description": "The portal stayed unavailable after retries; nothing was changed"}},
    dependencies=[Depends(require(Access.ADMIN))],
)
async def poll_now(request: Request) -> PollCounts:
    """Read every EDF topic now (after a scheduled poll in progress, if any) and apply the changes."""
    try:
        return await _poller(request).poll_now()
    except PortalUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"Funding & Tenders Portal unavailable ({exc}); stored calls are unchanged, try again later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc


@router.get(
    "/calls",
    response_model=Page[CallPublic],
    summary="Stored calls, latest deadline first (calls without deadlines last, ties by id)",
    dependencies=[Depends(require(Access.PUBLIC))],
)
async def list_calls(
    request: Request,
    page: PageDep,
    programme: Annotated[str | None, Query(max_length=50, description="e.g. EDF")] = None,
    status_: Annotated[CallStatus | None, Query(alias="status")] = None,
    domain: Annotated[DomainSlug | None, Query(description="Only calls in this VISD domain")] = None,
) -> Page[CallPublic]:
    async with _uow(request)() as uow:
        rows, total = await use_cases.list_calls(
            uow, programme=programme, status=status_, domain=domain, limit=page.limit, offset=page.offset
        )
        return Page(items=[_public(c) for c in rows], total=total, limit=page.limit, offset=page.offset)


@router.get(
    "/calls/{call_id}", response_model=CallPublic, dependencies=[Depends(require(Access.PUBLIC))], responses=errors(404)
)
async def get_call(call_id: TopicIdPath, request: Request) -> CallPublic:
    async with _uow(request)() as uow:
        try:
            return _public(await use_cases.get_call_or_raise(uow, call_id=call_id))
        except use_cases.CallNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "call not found") from exc


@router.get(
    "/calls/{call_id}/suggestions",
    response_model=CallSuggestionsPublic,
    summary="The latest partner suggestions for a call (from suggestions.v1); empty until computed",
    dependencies=[Depends(require(Access.AUTHENTICATED))],
    responses=errors(404),
)
async def get_call_suggestions(call_id: TopicIdPath, request: Request) -> CallSuggestionsPublic:
    async with _uow(request)() as uow:
        try:
            row = await use_cases.get_suggestions(uow, call_id=call_id)
        except use_cases.CallNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "call not found") from exc
        if row is None:
            return CallSuggestionsPublic(call_id=call_id, algorithm_version=None, computed_at=None, suggestions=[])
        return CallSuggestionsPublic(
            call_id=call_id,
            algorithm_version=row.algorithm_version,
            computed_at=row.computed_at,
            suggestions=[SuggestionItem.model_validate(s) for s in row.payload.get("suggestions", [])],
        )
