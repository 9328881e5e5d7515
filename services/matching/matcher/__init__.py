"""Pure domain layer of the matching service: profiles in, explained rankings and consortia out."""

from services.matching.matcher.consortium import check_rules, propose_consortia
from services.matching.matcher.matcher import DEFAULT_TARGET_WEIGHTS, DEFAULT_WEIGHTS, SIGNALS, Matcher, MatcherConfig
from services.matching.matcher.models import (
    CapabilityMatch,
    CompanyProfile,
    ConsortiumMember,
    ConsortiumProposal,
    NeedCoverage,
    ProjectHistory,
    Reasons,
    RuleCheck,
    Suggestion,
    Target,
)
from services.matching.matcher.scoring import RescoreCheck

__all__ = [
    "DEFAULT_TARGET_WEIGHTS",
    "DEFAULT_WEIGHTS",
    "SIGNALS",
    "CapabilityMatch",
    "CompanyProfile",
    "ConsortiumMember",
    "ConsortiumProposal",
    "Matcher",
    "MatcherConfig",
    "NeedCoverage",
    "ProjectHistory",
    "Reasons",
    "RescoreCheck",
    "RuleCheck",
    "Suggestion",
    "Target",
    "check_rules",
    "propose_consortia",
]
