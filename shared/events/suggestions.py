"""Events on ``suggestions.v1``: ranked, explained partner suggestions per target."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.events.base import EventData, event

TOPIC = "suggestions.v1"

TargetType = Literal["project", "call"]


class CapabilityMatch(BaseModel):
    sought: str
    capability: str
    similarity: float


class MatchReasons(BaseModel):
    """Why a company was suggested, in terms a person can read."""

    matched_domains: list[str] = Field(default_factory=list)
    capability_matches: list[CapabilityMatch] = Field(default_factory=list)
    top_terms: list[str] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    eligibility: str = ""
    summary: str = ""


class SuggestionItem(BaseModel):
    company_id: str
    company_name: str
    country: str
    rank: int = Field(ge=1)
    score: float = Field(ge=0.0, le=1.0)
    reasons: MatchReasons


@event("bondgenoot.suggestions.computed.v1", topic=TOPIC)
class SuggestionsComputed(EventData):
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    domains: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    algorithm_version: str
    computed_at: datetime
    suggestions: list[SuggestionItem]


class ConsortiumMember(BaseModel):
    company_id: str
    company_name: str
    country: str
    role: str
    covers: list[str] = Field(default_factory=list)


class RuleCheck(BaseModel):
    rule: str
    passed: bool
    detail: str


class NeedCoverage(BaseModel):
    """Which member answers a need (a sought capability or a domain), and the evidence."""

    need: str
    company_id: str | None
    evidence: str = ""
    similarity: float = 0.0


class ConsortiumProposal(BaseModel):
    rank: int
    score: float
    members: list[ConsortiumMember]
    coverage: list[NeedCoverage] = Field(default_factory=list)
    rules: list[RuleCheck]


@event("bondgenoot.consortium.proposed.v1", topic=TOPIC)
class ConsortiumProposed(EventData):
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    algorithm_version: str
    computed_at: datetime
    proposals: list[ConsortiumProposal]
