"""Consortium drafts and invitations (owned here), read models of companies and targets, and the API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.events.consortia import ConsortiumRef, DeclineReason, LeadKind, LeadRef, Outcome
from shared.events.suggestions import TargetType
from shared.outbox import utcnow

ConsortiumStatus = Literal["draft", "submitted", "funded", "not_funded"]
InvitationStatus = Literal["pending", "accepted", "declined", "withdrawn", "left", "removed"]
ACTIVE: frozenset[str] = frozenset({"pending", "accepted"})
"""Invitation states that hold a company's place in a draft (at most one per company and draft)."""


def _id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- owned tables


class Consortium(SQLModel, table=True):
    __tablename__ = "consortia"

    id: str = Field(default_factory=_id, primary_key=True, max_length=36)
    target_type: str = Field(max_length=10)
    target_id: str = Field(index=True, max_length=200)
    target_title: str = Field(max_length=500)
    programme: str = Field(max_length=20)
    lead_kind: str = Field(max_length=10)
    lead_id: str = Field(index=True, max_length=200, description="institute name or company id")
    lead_name: str = Field(max_length=200)
    status: str = Field(default="draft", max_length=12)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def lead(self) -> LeadRef:
        kind: LeadKind = "company" if self.lead_kind == "company" else "institute"
        return LeadRef(kind=kind, id=self.lead_id, name=self.lead_name)

    @property
    def ref(self) -> ConsortiumRef:
        target_type: TargetType = "call" if self.target_type == "call" else "project"
        return ConsortiumRef(
            consortium_id=self.id, target_type=target_type, target_id=self.target_id, programme=self.programme
        )


class Invitation(SQLModel, table=True):
    """One company asked to join one draft; its status is the company's place in the roster."""

    __tablename__ = "invitations"
    # A company holds at most one active (pending or accepted) place per draft: ``active_key`` is
    # "<consortium>:<company>" while active and NULL afterwards, and NULLs never collide. The database
    # enforces it, so two concurrent invitations of the same company cannot both land.
    __table_args__ = (UniqueConstraint("active_key", name="uq_invitation_active"),)

    id: str = Field(default_factory=_id, primary_key=True, max_length=36)
    consortium_id: str = Field(index=True, max_length=36)
    company_id: str = Field(index=True, max_length=64)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", index=True, max_length=10)
    reason: str | None = Field(default=None, max_length=20)
    active_key: str | None = Field(default=None, max_length=110)
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None

    def set_status(self, status: InvitationStatus) -> None:
        self.status = status
        self.active_key = f"{self.consortium_id}:{self.company_id}" if status in ACTIVE else None


# --------------------------------------------------------------------------- read models (from events)


class CompanyView(SQLModel, table=True):
    """The latest public profile of a company (companies.v1): the facts the rules and coverage read."""

    __tablename__ = "consortia_company_views"

    company_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(index=True, max_length=200)
    profile: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class TargetView(SQLModel, table=True):
    """The latest version of a project (projects.v1) or call (calls.v1) a draft can be opened for."""

    __tablename__ = "consortia_target_views"

    target_type: str = Field(primary_key=True, max_length=10)
    target_id: str = Field(primary_key=True, max_length=200)
    title: str = Field(max_length=500)
    programme: str = Field(max_length=20)
    status: str = Field(max_length=20)
    facts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class TargetRanking(SQLModel, table=True):
    """The latest ranked suggestions for a target (suggestions.v1): who to propose for an uncovered need."""

    __tablename__ = "consortia_target_rankings"

    target_type: str = Field(primary_key=True, max_length=10)
    target_id: str = Field(primary_key=True, max_length=200)
    computed_at: datetime
    company_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))


# --------------------------------------------------------------------------- HTTP shapes


class ConsortiumCreate(BaseModel):
    target_type: TargetType
    target_id: str = PField(min_length=1, max_length=200)


class InvitationCreate(BaseModel):
    company_id: str = PField(min_length=1, max_length=64)
    message: str = PField(default="", max_length=1000, description="A short note to the invitee")


class DeclineBody(BaseModel):
    reason: DeclineReason | None = None


class OutcomeBody(BaseModel):
    status: Outcome


class RuleResult(BaseModel):
    rule: str
    ok: bool
    why: str


class MemberRead(BaseModel):
    company_id: str
    name: str
    country: str
    role: Literal["coordinator", "partner"]
    covers: list[str] = PField(default_factory=list)


class Cover(BaseModel):
    company_id: str
    name: str
    evidence: str


class NeedRead(BaseModel):
    need: str
    kind: Literal["capability", "domain"]
    covered_by: list[Cover] = PField(default_factory=list)


class Candidate(BaseModel):
    company_id: str
    name: str
    country: str
    rank: int | None = PField(description="Its rank among the target's suggestions (None when not ranked)")
    evidence: str


class Gap(BaseModel):
    need: str
    candidates: list[Candidate] = PField(default_factory=list)
    why_empty: str = ""


class InvitationRead(BaseModel):
    id: str
    consortium_id: str
    company_id: str
    company_name: str
    status: InvitationStatus
    reason: DeclineReason | None = None
    message: str
    created_at: datetime
    answered_at: datetime | None = None


class ConsortiumRead(BaseModel):
    id: str
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    status: ConsortiumStatus
    lead: LeadRef
    members: list[MemberRead]
    invitations: list[InvitationRead]
    rules: list[RuleResult]
    rules_passed: bool
    coverage: list[NeedRead]
    gaps: list[Gap]
    created_at: datetime
    updated_at: datetime


class ConsortiumSummary(BaseModel):
    id: str
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    status: ConsortiumStatus
    lead: LeadRef
    role: Literal["lead", "member"]


class Funnel(BaseModel):
    """How far suggestions went: each stage counts distinct organisations (per target) or targets (per company)."""

    suggested: int
    invited: int
    accepted: int
    submitted: int
    funded: int


class InvitationForInvitee(BaseModel):
    """What the invited company is told: who asks, for what, and with which words."""

    id: str
    consortium_id: str
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    lead: LeadRef
    message: str
    status: InvitationStatus
    reason: DeclineReason | None = None
    created_at: datetime
    answered_at: datetime | None = None
