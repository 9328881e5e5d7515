"""Subscriptions (one per company) and the alert inbox: one SQLModel family per entity."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, field_validator, model_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlalchemy.orm import relationship
from sqlmodel import Field, Relationship, SQLModel

from services.alerts.delivery_models import ChannelsPublic, EmailConfirmation, SubscriptionChannel, channels_of
from shared.events.suggestions import MatchReasons, TargetType
from shared.outbox import utcnow
from shared.validation import DomainSlug, Keyword, ProgrammeCode

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
CompanyId = Annotated[str, PField(pattern=UUID_PATTERN, description="The company's id in the registry")]


class SubscriptionIn(BaseModel):
    """What a company wants to be alerted about; an empty list means "no filter" on that axis."""

    programmes: list[ProgrammeCode] = PField(default_factory=list, max_length=20)
    domains: list[DomainSlug] = PField(default_factory=list, max_length=20)
    keywords: list[Keyword] = PField(
        default_factory=list,
        max_length=50,
        description="At least one must occur (case-insensitively) in the target's title or the reasons",
    )
    min_score: float = PField(default=0.3, ge=0.0, le=1.0)
    active: bool = True

    @field_validator("programmes", "domains", "keywords")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"

    company_id: str = Field(primary_key=True, max_length=36)
    programmes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    domains: list[str] = Field(sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(sa_column=Column(JSON, nullable=False))
    min_score: float = 0.3
    active: bool = Field(default=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Read-only view of the delivery channels, loaded with the subscription (services/alerts/delivery.py).
    channels: list[SubscriptionChannel] = Relationship(
        sa_relationship=relationship(SubscriptionChannel, lazy="selectin", viewonly=True)
    )
    # The e-mail address's confirmation (services/alerts/confirmation.py); no foreign key, same company id.
    confirmation: EmailConfirmation | None = Relationship(
        sa_relationship=relationship(
            EmailConfirmation,
            primaryjoin="Subscription.company_id == foreign(EmailConfirmation.company_id)",
            lazy="selectin",
            viewonly=True,
            uselist=False,
        )
    )


class SubscriptionPublic(BaseModel):
    company_id: str
    programmes: list[str]
    domains: list[str]
    keywords: list[str]
    min_score: float
    active: bool
    created_at: datetime
    updated_at: datetime
    channels: ChannelsPublic = PField(default_factory=ChannelsPublic, description="Delivery channels (no secrets)")

    @model_validator(mode="before")
    @classmethod
    def _with_channels(cls, value: Any) -> Any:
        if isinstance(value, Subscription):
            data = {name: getattr(value, name) for name in cls.model_fields if name != "channels"}
            data["channels"] = channels_of(value)
            return data
        return value


class Alert(SQLModel, table=True):
    """One inbox entry: a company is alerted at most once per target."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("company_id", "target_type", "target_id", name="uq_alerts_company_target"),
        Index("ix_alerts_inbox", "company_id", "created_at"),
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    company_id: str = Field(max_length=36)
    target_type: str = Field(max_length=20)
    target_id: str = Field(max_length=200)
    target_title: str = Field(sa_column=Column(Text, nullable=False))
    programme: str = Field(max_length=100)
    score: float
    rank: int
    reasons: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source_event_id: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class AlertPublic(BaseModel):
    id: str
    company_id: str
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    score: float
    rank: int
    reasons: MatchReasons
    created_at: datetime
