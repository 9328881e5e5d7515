"""The live check of a draft's real roster: the matcher's rule and coverage functions on the accepted members.

Nothing here is specific to drafts: it turns the read models (company profiles, the target) into
the facts :mod:`shared.consortium_rules` and :mod:`shared.coverage` judge — the same functions the
matcher verifies its proposals with — and adds what a lead needs next: who covers each need, and
for an uncovered one the best-ranked registered organisations that would cover it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.consortia.models import Candidate, Cover, Gap, NeedRead, RuleResult
from shared.consortium_rules import Member, check_consortium, coordinated_before, roster
from shared.coverage import covers, needs_of
from shared.events.companies import CompanyProfileData
from shared.taxonomy import load_taxonomy
from shared.taxonomy_index import load_index
from shared.text import fold

# A lead institute that never registered a profile is taken to be what the matcher's proposals assume:
# projects are posted by Belgian research institutes.
STAND_IN_COUNTRY, STAND_IN_TYPE, STAND_IN_SIZE = "BE", "research", "large"


@dataclass(frozen=True)
class TargetFacts:
    """A project or call as coverage reads it (from the targets read model)."""

    id: str
    title: str
    programme: str
    summary: str = ""
    description: str = ""
    institute: str | None = None
    sought_capabilities: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    edf_category: str | None = None

    @classmethod
    def from_view(cls, target_id: str, facts: dict[str, Any]) -> TargetFacts:
        return cls(
            id=target_id,
            title=str(facts.get("title", "")),
            programme=str(facts.get("programme", "OTHER")),
            summary=str(facts.get("summary", "")),
            description=str(facts.get("description", "")),
            institute=facts.get("institute"),
            sought_capabilities=tuple(facts.get("sought_capabilities", ())),
            domains=tuple(facts.get("domains", ())),
            edf_category=facts.get("edf_category"),
        )


@dataclass(frozen=True)
class Participant:
    """One organisation on the roster: the lead or an accepted member, with its profile when registered."""

    id: str
    name: str
    coordinator: bool
    profile: CompanyProfileData | None


@dataclass(frozen=True)
class Prospect:
    """A registered organisation that could fill a gap, with its rank among the target's suggestions."""

    profile: CompanyProfileData
    rank: int | None


@dataclass
class RosterReport:
    rules: list[RuleResult]
    coverage: list[NeedRead]
    gaps: list[Gap]
    member_covers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rules)


def same_name(a: str, b: str) -> bool:
    return " ".join(fold(a).split()) == " ".join(fold(b).split())


def member_facts(p: Participant, target: TargetFacts) -> Member:
    """What the programme rules need to know about one participant."""
    posting = bool(target.institute) and same_name(p.name, target.institute or "")
    if p.profile is None:  # only a lead institute may be unregistered (see STAND_IN_*)
        return Member(
            id=p.id,
            name=p.name,
            country=STAND_IN_COUNTRY,
            organisation_type=STAND_IN_TYPE,
            size=STAND_IN_SIZE,
            coordinator=p.coordinator,
            posting_institute=posting,
        )
    profile = p.profile
    return Member(
        id=profile.id,
        name=profile.name,
        country=profile.country,
        organisation_type=profile.organisation_type,
        size=profile.size,
        parent_group=profile.parent_group,
        coordinator=p.coordinator,
        has_coordinated=coordinated_before(h.role for h in profile.history),
        posting_institute=posting,
    )


def check(
    *,
    target: TargetFacts,
    participants: Sequence[Participant],
    unknown: Sequence[str],
    prospects: Sequence[Prospect],
    taken: set[str],
    max_candidates: int = 3,
) -> RosterReport:
    """Rules, coverage and gaps of a roster; ``unknown`` are accepted members whose profile is gone.

    ``prospects`` are ranked first (the target's suggestions in order), then the rest; ``taken``
    (members and pending invitees) are never proposed again.
    """
    index = load_index()
    needs = needs_of(target, index)
    coverage: list[NeedRead] = []
    member_covers: dict[str, list[str]] = {}
    registered = [p for p in participants if p.profile is not None]
    for need in needs:
        row = NeedRead(need=need.text, kind="domain" if need.kind == "domain" else "capability")
        for p in registered:
            assert p.profile is not None
            evidence = covers(need, p.profile, index)
            if evidence.covered:
                row.covered_by.append(Cover(company_id=p.id, name=p.name, evidence=evidence.detail))
                member_covers.setdefault(p.id, []).append(need.text)
        coverage.append(row)
    uncovered = [row.need for row in coverage if not row.covered_by]
    facts = roster(
        target.programme,
        [member_facts(p, target) for p in participants],
        load_taxonomy(),
        institute=target.institute,
    )
    checks = check_consortium(facts, unknown=unknown, needs=len(needs), uncovered=uncovered)
    gaps = [_gap(need, prospects, taken, index, max_candidates) for need in needs if need.text in set(uncovered)]
    return RosterReport(
        rules=[RuleResult(rule=c.rule, ok=c.passed, why=c.detail) for c in checks],
        coverage=coverage,
        gaps=gaps,
        member_covers=member_covers,
    )


def _gap(need: Any, prospects: Sequence[Prospect], taken: set[str], index: Any, limit: int) -> Gap:
    gap = Gap(need=need.text)
    for prospect in prospects:
        if prospect.profile.id in taken:
            continue
        evidence = covers(need, prospect.profile, index)
        if evidence.covered:
            gap.candidates.append(
                Candidate(
                    company_id=prospect.profile.id,
                    name=prospect.profile.name,
                    country=prospect.profile.country,
                    rank=prospect.rank,
                    evidence=evidence.detail,
                )
            )
            if len(gap.candidates) >= limit:
                break
    if not gap.candidates:
        gap.why_empty = "no registered organisation outside the roster covers this yet"
    return gap
