"""Stored calls and the latest partner suggestions per call."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from services.calls.domain.normalise import CallStatus, NormalisedCall
from shared.events.suggestions import SuggestionItem
from shared.outbox import utcnow


class Call(SQLModel, table=True):
    """The last stored version of one topic: what the next poll is diffed against."""

    __tablename__ = "calls"

    id: str = Field(primary_key=True, max_length=200)
    programme: str = Field(index=True, max_length=50)
    title: str = Field(sa_column=Column(Text, nullable=False))
    call_identifier: str | None = Field(default=None, max_length=200)
    call_title: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: str = Field(index=True, max_length=20)
    opening_date: date | None = None
    deadlines: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """ISO dates, ascending."""
    latest_deadline: date | None = Field(default=None, index=True)
    """The last of the deadlines, denormalised for sorting."""
    budget_eur: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    action_type: str | None = Field(default=None, max_length=50)
    edf_category: str | None = Field(default=None, max_length=50)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str = Field(max_length=500)
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ccm2_id: str | None = Field(default=None, max_length=50)
    fingerprint: str = Field(max_length=64)
    first_seen_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None

    @classmethod
    def from_normalised(cls, call: NormalisedCall, *, fingerprint: str) -> Call:
        row = cls(
            id=call.id,
            programme=call.programme,
            title=call.title,
            status=call.status,
            url=call.url,
            fingerprint=fingerprint,
        )
        row.store(call, fingerprint=fingerprint)
        return row

    def store(self, call: NormalisedCall, *, fingerprint: str) -> None:
        """Copy a normalised version into the row (lists are replaced, never mutated in place)."""
        if call.id != self.id:
            raise ValueError(f"cannot store {call.id} in row {self.id}")
        self.programme = call.programme
        self.title = call.title
        self.call_identifier = call.call_identifier
        self.call_title = call.call_title
        self.status = call.status
        self.opening_date = call.opening_date
        self.deadlines = [d.isoformat() for d in call.deadlines]
        self.latest_deadline = max(call.deadlines) if call.deadlines else None
        self.budget_eur = call.budget_eur
        self.action_type = call.action_type
        self.edf_category = call.edf_category
        self.description = call.description
        self.url = call.url
        self.keywords = list(call.keywords)
        self.domains = list(call.domains)
        self.ccm2_id = call.ccm2_id
        self.fingerprint = fingerprint

    def normalised(self) -> NormalisedCall:
        """The stored version as the domain sees it (what diff_calls compares against)."""
        return NormalisedCall(
            id=self.id,
            programme=self.programme,
            title=self.title,
            call_identifier=self.call_identifier,
            call_title=self.call_title,
            status=self.status,  # type: ignore[arg-type]
            opening_date=self.opening_date,
            deadlines=[date.fromisoformat(d) for d in self.deadlines],
            budget_eur=self.budget_eur,
            action_type=self.action_type,
            edf_category=self.edf_category,
            description=self.description,
            url=self.url,
            keywords=list(self.keywords),
            domains=list(self.domains),
            ccm2_id=self.ccm2_id,
        )


class CallPublic(BaseModel):
    id: str
    programme: str
    title: str
    call_identifier: str | None
    call_title: str | None
    status: CallStatus
    opening_date: date | None
    deadlines: list[date]
    budget_eur: int | None
    action_type: str | None
    edf_category: str | None
    description: str
    url: str
    keywords: list[str]
    domains: list[str]
    first_seen_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class CallSuggestions(SQLModel, table=True):
    """The latest SuggestionsComputed for one call, kept from suggestions.v1."""

    __tablename__ = "call_suggestions"

    call_id: str = Field(primary_key=True, max_length=200)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """The event's data as JSON (target, algorithm, suggestions)."""
    algorithm_version: str = Field(max_length=100)
    computed_at: datetime
    event_id: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow)


class CallSuggestionsPublic(BaseModel):
    call_id: str
    algorithm_version: str | None
    computed_at: datetime | None
    suggestions: list[SuggestionItem]
