"""The matcher's vocabulary: company profiles, targets, explained suggestions and consortium proposals.

Field names follow the events on ``companies.v1`` / ``suggestions.v1`` so the service can pass
``model_dump()`` output straight into them; unknown input fields are ignored rather than rejected
because the registry may add profile fields before the matcher uses them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.consortium_rules import SME_SIZES as SME_SIZES

# One model for a rule outcome, from the check to the published event (not a mirror of it).
from shared.events.suggestions import RuleCheck as RuleCheck

OrganisationType = Literal["company", "research", "public", "other"]
Size = Literal["micro", "small", "medium", "large"]
Programme = Literal["FSDB", "VLAIO", "EDF", "DIANA", "DEFRA", "OTHER"]
TargetType = Literal["project", "call"]


class ProjectHistory(BaseModel):
    """One project an organisation took part in: the evidence the matcher learns a profile from."""

    model_config = ConfigDict(extra="ignore")

    programme: str = "OTHER"
    year: int | None = None
    title: str = ""
    summary: str = ""
    topic_id: str | None = None
    role: str | None = Field(default=None, description="coordinator, participant, thirdParty, ...")
    partners: list[str] = Field(default_factory=list, description="partner names or PICs")


class CompanyProfile(BaseModel):
    """A registered organisation as the matcher sees it (no contact details)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    country: str = Field(description="ISO 3166-1 alpha-2; EU-style EL/UK are accepted")
    city: str = ""
    organisation_type: OrganisationType = "company"
    size: Size = "small"
    domains: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    parent_group: str | None = None
    pic: str | None = None
    website: str | None = None
    history: list[ProjectHistory] = Field(default_factory=list)

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @property
    def is_sme(self) -> bool:
        return self.size in SME_SIZES


class Target(BaseModel):
    """What is being matched against: a posted research project or a funding call (topic)."""

    model_config = ConfigDict(extra="ignore")

    target_type: TargetType
    id: str
    title: str
    programme: Programme = "OTHER"
    summary: str = ""
    description: str = ""
    sought_capabilities: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    edf_category: str | None = None
    action_type: str | None = None
    institute: str | None = Field(default=None, description="posting organisation (projects)")
    partners_wanted: int = Field(default=1, ge=0)

    @field_validator("programme", mode="before")
    @classmethod
    def _known_programme(cls, value: object) -> object:
        # A programme the matcher has no rules for is matched without restrictions.
        known = {"FSDB", "VLAIO", "EDF", "DIANA", "DEFRA", "OTHER"}
        if isinstance(value, str):
            upper = value.strip().upper()
            return upper if upper in known else "OTHER"
        return value


class CapabilityMatch(BaseModel):
    """A sought capability and the company statement that answers it best."""

    sought: str
    capability: str
    similarity: float = Field(ge=0.0, le=1.0)


class Reasons(BaseModel):
    """Why a company was suggested, in terms a person can read."""

    matched_domains: list[str] = Field(default_factory=list)
    capability_matches: list[CapabilityMatch] = Field(default_factory=list)
    top_terms: list[str] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    eligibility: str = ""
    summary: str = ""


class Suggestion(BaseModel):
    """One ranked, explained company for a target."""

    company_id: str
    company_name: str
    country: str
    rank: int = Field(ge=1)
    score: float = Field(ge=0.0, le=1.0)
    reasons: Reasons


class ConsortiumMember(BaseModel):
    """A member of a proposed consortium, with the facts the rules were checked on."""

    company_id: str
    company_name: str
    country: str
    role: str = Field(description="coordinator or partner")
    covers: list[str] = Field(default_factory=list, description="needs this member answers")
    organisation_type: OrganisationType = "company"
    size: Size = "small"
    parent_group: str | None = None
    posting_institute: bool = False


class NeedCoverage(BaseModel):
    """Which member answers a need (a sought capability or a target domain) and why."""

    need: str
    company_id: str | None
    evidence: str = ""
    similarity: float = 0.0


class ConsortiumProposal(BaseModel):
    """A consortium that satisfies the programme's rules, explained member by member."""

    rank: int = Field(ge=1)
    score: float = Field(ge=0.0, le=1.0)
    programme: str = "OTHER"
    members: list[ConsortiumMember]
    coverage: list[NeedCoverage] = Field(default_factory=list)
    rules: list[RuleCheck] = Field(default_factory=list)

    @property
    def coordinator(self) -> ConsortiumMember | None:
        return next((m for m in self.members if m.role == "coordinator"), None)

    @property
    def satisfied(self) -> bool:
        return bool(self.rules) and all(r.passed for r in self.rules)
