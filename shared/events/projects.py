"""Events on ``projects.v1``: research projects posted by institutes."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from shared.events.base import EventData, event

TOPIC = "projects.v1"


class ProjectData(BaseModel):
    id: str
    title: str
    summary: str
    programme: str
    institute: str
    domains: list[str]
    sought_capabilities: list[str]
    deadline: date | None = None
    partners_wanted: int = Field(ge=1)
    status: str


@event("bondgenoot.project.posted.v1", topic=TOPIC)
class ProjectPosted(EventData):
    project: ProjectData


@event("bondgenoot.project.updated.v1", topic=TOPIC)
class ProjectUpdated(EventData):
    project: ProjectData
    changed_fields: list[str]


@event("bondgenoot.project.closed.v1", topic=TOPIC)
class ProjectClosed(EventData):
    project_id: str
