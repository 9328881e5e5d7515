"""The company entity: one SQLModel family (base, create, update, table, public)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, StringConstraints
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.events.companies import CompanyProfileData, ProjectHistoryItem
from shared.outbox import utcnow
from shared.validation import (
    CountryCode,
    DomainSlug,
    Email,
    EnterpriseNumber,
    Identifier,
    Keyword,
    MultiLine,
    PartialUpdate,
    ShortText,
    SingleLine,
    Statement,
    WebUrl,
)

OrganisationType = Literal["company", "research", "public", "other"]
Size = Literal["micro", "small", "medium", "large"]
Pic = Annotated[str, PField(pattern=r"^\d{9}$", max_length=9, description="EU participant identification code")]


MAX_HISTORY_ITEMS = 200
"""A profile keeps at most this many projects (docs/limits.md); the importer stops adding there."""


class HistoryIn(BaseModel):
    programme: ShortText
    year: int | None = PField(default=None, ge=1980, le=2100)
    title: ShortText
    summary: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), MultiLine] = ""
    topic_id: Identifier | None = None
    role: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50), SingleLine] | None = None
    partners: list[ShortText] = PField(default_factory=list, max_length=100)


class CompanyCreate(BaseModel):
    name: ShortText
    country: CountryCode
    city: ShortText
    enterprise_number: EnterpriseNumber | None = None
    organisation_type: OrganisationType = "company"
    size: Size
    domains: list[DomainSlug] = PField(min_length=1, max_length=9)
    capabilities: list[Statement] = PField(min_length=1, max_length=50)
    keywords: list[Keyword] = PField(default_factory=list, max_length=50)
    website: WebUrl | None = None
    contact_email: Email
    parent_group: ShortText | None = None
    pic: Pic | None = None
    history: list[HistoryIn] = PField(
        default_factory=list,
        max_length=MAX_HISTORY_ITEMS,
        description="Projects taken part in. The whole profile must stay under the event size limit "
        "(docs/limits.md): a very long history of very large items is refused with 413 naming `history`.",
    )


class CompanyUpdate(PartialUpdate):
    """A partial update: only the fields given change; only optional fields may be set to null."""

    nullable: ClassVar[frozenset[str]] = frozenset({"enterprise_number", "website", "parent_group", "pic"})

    name: ShortText | None = None
    country: CountryCode | None = None
    city: ShortText | None = None
    enterprise_number: EnterpriseNumber | None = None
    organisation_type: OrganisationType | None = None
    size: Size | None = None
    domains: list[DomainSlug] | None = PField(default=None, min_length=1, max_length=9)
    capabilities: list[Statement] | None = PField(default=None, min_length=1, max_length=50)
    keywords: list[Keyword] | None = PField(default=None, max_length=50)
    website: WebUrl | None = None
    contact_email: Email | None = None
    parent_group: ShortText | None = None
    pic: Pic | None = None
    history: list[HistoryIn] | None = PField(default=None, max_length=MAX_HISTORY_ITEMS)


class Company(SQLModel, table=True):
    __tablename__ = "companies"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    name: str = Field(index=True, max_length=200)
    country: str = Field(index=True, max_length=2)
    city: str = Field(max_length=200)
    enterprise_number: str | None = Field(default=None, unique=True, max_length=20)
    organisation_type: str = Field(max_length=20)
    size: str = Field(max_length=10)
    domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    capabilities: list[str] = Field(sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(sa_column=Column(JSON, nullable=False))
    website: str | None = Field(default=None, max_length=500)
    contact_email: str = Field(max_length=320)
    parent_group: str | None = Field(default=None, max_length=200)
    pic: str | None = Field(default=None, index=True, max_length=9)
    history: list[dict[str, object]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Denormalised for filtering on both SQLite and PostgreSQL without JSON operators.
    domains_csv: str = Field(default="", max_length=400)
    search_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def refresh_derived(self) -> None:
        self.domains_csv = "," + ",".join(self.domains) + ","
        self.search_text = " ".join([self.name, *self.capabilities, *self.keywords]).lower()

    def public_profile(self) -> CompanyProfileData:
        """What integrators may see: no contact details."""
        return CompanyProfileData(
            id=self.id,
            name=self.name,
            country=self.country,
            city=self.city,
            organisation_type=self.organisation_type,
            size=self.size,
            domains=self.domains,
            capabilities=self.capabilities,
            keywords=self.keywords,
            website=self.website,
            parent_group=self.parent_group,
            pic=self.pic,
            history=[ProjectHistoryItem.model_validate(h) for h in self.history],
            updated_at=self.updated_at.date(),
        )


class CompanyPublic(BaseModel):
    id: str
    name: str
    country: str
    city: str
    enterprise_number: str | None
    organisation_type: str
    size: str
    domains: list[str]
    capabilities: list[str]
    keywords: list[str]
    website: str | None
    contact_email: str
    parent_group: str | None
    pic: str | None
    history: list[HistoryIn]
    created_at: datetime
    updated_at: datetime
