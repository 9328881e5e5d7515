"""Admin routes every service serves for its parked outbox rows (see shared.outbox): list and retry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from shared.api_docs import errors
from shared.auth import Access, require
from shared.db import Database
from shared.limits import MAX_DB_INTEGER
from shared.outbox import ParkedNotFound, list_parked, retry_parked
from shared.paging import Page, PageDep

router = APIRouter(prefix="/admin/outbox", tags=["operations"], dependencies=[Depends(require(Access.ADMIN))])


class ParkedEvent(BaseModel):
    """An event the broker refused for good; later events of its key wait behind it."""

    outbox_id: int
    event_id: str
    event_type: str
    topic: str
    key: str
    size_bytes: int = Field(description="Size of the record value (the CloudEvent JSON)")
    reason: str = Field(description="What the producer or the broker said")
    parked_at: datetime


class Released(BaseModel):
    released: int = Field(description="How many parked rows the relay will try again")


def _db(request: Request) -> Database:
    return request.app.state.runtime.db  # type: ignore[no-any-return]


def _wake(request: Request) -> None:
    request.app.state.runtime.relay.wake()


@router.get("/parked", response_model=Page[ParkedEvent], summary="Outbox rows the broker refused for good")
async def get_parked(request: Request, page: PageDep) -> Page[ParkedEvent]:
    rows, total = await list_parked(_db(request), limit=page.limit, offset=page.offset)
    items = [ParkedEvent.model_validate(r, from_attributes=True) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/parked/retry", response_model=Released, summary="Try every parked row again, in order")
async def retry_all(request: Request) -> Released:
    released = await retry_parked(_db(request))
    _wake(request)
    return Released(released=released)


@router.post(
    "/parked/{outbox_id}/retry",
    response_model=Released,
    summary="Try one parked row again (e.g. after raising the topic's max.message.bytes)",
    responses=errors(404, d404="No parked row with this id"),
)
async def retry_one(outbox_id: Annotated[int, Path(ge=1, le=MAX_DB_INTEGER)], request: Request) -> Released:
    try:
        released = await retry_parked(_db(request), outbox_id=outbox_id)
    except ParkedNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no parked outbox row with this id") from exc
    _wake(request)
    return Released(released=released)
