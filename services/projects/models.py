"""The project entity (one SQLModel family) and the latest suggestions/consortia kept per project."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.events.projects import ProjectData
from shared.events.suggestions import ConsortiumProposal, SuggestionItem
from shared.outbox import utcnow
from shared.validation import DomainSlug, Email, LongText, PartialUpdate, ProgrammeCode, ShortText, Statement

ProjectStatus = Literal["open", "closed"]

# Fields that never leave this service in an event (the public projection omits them).
PRIVATE_FIELDS = frozenset({"contact_email"})


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _not_in_past(value: date | None) -> date | None:
    if value is not None and value < utcnow().date():
        raise ValueError(f"deadline {value.isoformat()} is in the past")
    return value


class ProjectCreate(BaseModel):
    title: ShortText
    summary: LongText
    programme: ProgrammeCode
    institute: ShortText = PField(description="Name of the posting organisation")
    domains: list[DomainSlug] = PField(min_length=1, max_length=9)
    sought_capabilities: list[Statement] = PField(min_length=1, max_length=30)
    deadline: date | None = None
    partners_wanted: int = PField(default=5, ge=1, le=50)
    contact_email: Email

    @field_validator("domains", "sought_capabilities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _dedupe(value)

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: date | None) -> date | None:
        return _not_in_past(value)


class ProjectUpdate(PartialUpdate):
    """A partial update: only the fields given change; only ``deadline`` may be set to null."""

    nullable: ClassVar[frozenset[str]] = frozenset({"deadline"})

    title: ShortText | None = None
    summary: LongText | None = None
    programme: ProgrammeCode | None = None
    institute: ShortText | None = None
    domains: list[DomainSlug] | None = PField(default=None, min_length=1, max_length=9)
    sought_capabilities: list[Statement] | None = PField(default=None, min_length=1, max_length=30)
    deadline: date | None = None
    partners_wanted: int | None = PField(default=None, ge=1, le=50)
    contact_email: Email | None = None

    @field_validator("domains", "sought_capabilities")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _dedupe(value)

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: date | None) -> date | None:
        return _not_in_past(value)


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    title: str = Field(max_length=200)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    programme: str = Field(index=True, max_length=20)
    institute: str = Field(max_length=200)
    domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    sought_capabilities: list[str] = Field(sa_column=Column(JSON, nullable=False))
    deadline: date | None = Field(default=None)
    partners_wanted: int = 5
    contact_email: str = Field(max_length=320)
    status: str = Field(default="open", index=True, max_length=10)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = Field(default=None)

    def public_data(self) -> ProjectData:
        """What goes into events: everything but the contact details."""
        return ProjectData(
            id=self.id,
            title=self.title,
            summary=self.summary,
            programme=self.programme,
            institute=self.institute,
            domains=self.domains,
            sought_capabilities=self.sought_capabilities,
            deadline=self.deadline,
            partners_wanted=self.partners_wanted,
            status=self.status,
        )


class ProjectPublic(BaseModel):
    id: str
    title: str
    summary: str
    programme: str
    institute: str
    domains: list[str]
    sought_capabilities: list[str]
    deadline: date | None
    partners_wanted: int
    contact_email: str
    status: ProjectStatus
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class ProjectSuggestions(SQLModel, table=True):
    """The latest ``suggestions.computed`` for one project (newer ``computed_at`` wins)."""

    __tablename__ = "project_suggestions"

    project_id: str = Field(primary_key=True, max_length=36)
    event_id: str = Field(max_length=64)
    algorithm_version: str = Field(max_length=100)
    computed_at: datetime
    suggestions: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class ProjectConsortia(SQLModel, table=True):
    """The latest ``consortium.proposed`` for one project (newer ``computed_at`` wins)."""

    __tablename__ = "project_consortia"

    project_id: str = Field(primary_key=True, max_length=36)
    event_id: str = Field(max_length=64)
    algorithm_version: str = Field(max_length=100)
    computed_at: datetime
    proposals: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class SuggestionsPublic(BaseModel):
    project_id: str
    algorithm_version: str | None = None
    computed_at: datetime | None = None
    suggestions: list[SuggestionItem] = PField(default_factory=list)


class ConsortiaPublic(BaseModel):
    project_id: str
    algorithm_version: str | None = None
    computed_at: datetime | None = None
    proposals: list[ConsortiumProposal] = PField(default_factory=list)
