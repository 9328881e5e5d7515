"""The matching service's read models: companies and open targets, plus the latest results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.outbox import utcnow


class CompanyView(SQLModel, table=True):
    """A company profile as last seen on companies.v1."""

    __tablename__ = "company_views"

    id: str = Field(primary_key=True, max_length=36)
    profile: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class TargetView(SQLModel, table=True):
    """A project or call that suggestions are computed for."""

    __tablename__ = "target_views"

    target_type: str = Field(primary_key=True, max_length=10)
    target_id: str = Field(primary_key=True, max_length=100)
    open: bool = True
    target: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class SuggestionSet(SQLModel, table=True):
    """The latest ranked suggestions and consortium proposals for one target."""

    __tablename__ = "suggestion_sets"

    target_type: str = Field(primary_key=True, max_length=10)
    target_id: str = Field(primary_key=True, max_length=100)
    algorithm_version: str = Field(max_length=200)
    suggestions: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    consortia: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    computed_at: datetime = Field(default_factory=utcnow)
