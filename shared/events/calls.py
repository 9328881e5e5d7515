"""Events on ``calls.v1``: funding calls found by the call watcher."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from shared.events.base import EventData, event

TOPIC = "calls.v1"


class CallData(BaseModel):
    id: str = Field(description="The topic identifier, e.g. EDF-2025-RA-MCBRN-ATE")
    programme: str
    title: str
    call_identifier: str | None = None
    status: str
    opening_date: date | None = None
    deadlines: list[date] = Field(default_factory=list)
    budget_eur: int | None = None
    action_type: str | None = None
    edf_category: str | None = None
    description: str = ""
    url: str | None = None
    domains: list[str] = Field(default_factory=list)


@event("bondgenoot.call.published.v1", topic=TOPIC)
class CallPublished(EventData):
    call: CallData


@event("bondgenoot.call.updated.v1", topic=TOPIC)
class CallUpdated(EventData):
    call: CallData
    changed_fields: list[str]


@event("bondgenoot.call.closed.v1", topic=TOPIC)
class CallClosed(EventData):
    call_id: str
    reason: str
