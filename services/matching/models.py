"""The matching service's tables: open targets, their latest results, and what those were computed from.

Companies are not stored here: every replica holds all of them in memory, read from companies.v1
(see ``index_feed.py``). These tables are shared by all replicas of the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.outbox import utcnow


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


class RankingInput(SQLModel, table=True):
    """What a target's stored ranking was computed from: the target's version and the index position.

    ``target_version`` counts the target's events; ``ranked_version`` and ``index_position`` (companies.v1
    partition → next offset) are those of the stored ranking. The same input gives the same ranking and
    the same event ids, and a ranking from an older input never replaces a newer one (``domain``).
    A table of its own, so a database of the previous release needs no migration.
    """

    __tablename__ = "ranking_inputs"

    target_type: str = Field(primary_key=True, max_length=10)
    target_id: str = Field(primary_key=True, max_length=100)
    target_version: int = 0
    ranked_version: int = -1
    index_position: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)
