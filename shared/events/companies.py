"""Events on ``companies.v1``: the public face of a company profile (no contact details)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from shared.events.base import EventData, event

TOPIC = "companies.v1"


class ProjectHistoryItem(BaseModel):
    """A project the organisation took part in (what matching learns from)."""

    programme: str
    year: int | None = None
    title: str
    summary: str = ""
    topic_id: str | None = None
    role: str | None = None
    partners: list[str] = Field(default_factory=list)


class CompanyProfileData(BaseModel):
    id: str
    name: str
    country: str = Field(description="ISO 3166-1 alpha-2")
    city: str
    organisation_type: str
    size: str
    domains: list[str]
    capabilities: list[str]
    keywords: list[str] = Field(default_factory=list)
    website: str | None = None
    parent_group: str | None = None
    pic: str | None = None
    history: list[ProjectHistoryItem] = Field(default_factory=list)
    updated_at: date | None = None


@event("bondgenoot.company.registered.v1", topic=TOPIC)
class CompanyRegistered(EventData):
    company: CompanyProfileData


@event("bondgenoot.company.updated.v1", topic=TOPIC)
class CompanyUpdated(EventData):
    company: CompanyProfileData
    changed_fields: list[str]


@event("bondgenoot.company.removed.v1", topic=TOPIC)
class CompanyRemoved(EventData):
    company_id: str
