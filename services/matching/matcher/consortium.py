"""Consortium proposals built from a ranked list, shaped by the programme's rules.

Greedy and explainable, per proposal:
1. pick a lead (each proposal tries a different plausible one, so the alternatives differ);
2. add the posting institute where the programme requires it (FSDB);
3. cover every need: repeatedly add the candidate answering most uncovered needs (ties: relevance);
4. satisfy the structural rules (EDF: countries, independent groups, an SME);
5. fill up to the programme's usual size with the most relevant remaining candidates.
Each proposal is then verified with ``check_rules`` and only kept when every rule passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from services.matching.matcher.eligibility import country_rules
from services.matching.matcher.models import (
    CompanyProfile,
    ConsortiumMember,
    ConsortiumProposal,
    NeedCoverage,
    Suggestion,
    Target,
)
from services.matching.matcher.rules import (
    SPECS,
    ProgrammeSpec,
    check_rules,
    group_of,
    has_coordinated,
    is_posting_institute,
    spec_for,
)
from shared.coverage import Need, covers, needs_of
from shared.taxonomy import normalise_country
from shared.taxonomy_index import TaxonomyIndex, load_index

__all__ = ["SPECS", "check_rules", "proposal_size", "propose_consortia"]


def proposal_size(target: Target, spec: ProgrammeSpec) -> int:
    """How many members to aim for: what the target asks (lead + partners wanted), within the spec."""
    if target.target_type == "project" and target.partners_wanted > 0:
        return max(spec.typical_min, min(spec.typical_max, target.partners_wanted + 1))
    return spec.default_size


def _institute(target: Target, spec: ProgrammeSpec, profiles: Mapping[str, CompanyProfile]) -> CompanyProfile | None:
    """The posting institute's profile; a stand-in when it is not registered (it still leads)."""
    if not target.institute:
        return None
    found = next((p for p in profiles.values() if is_posting_institute(p, target)), None)
    if found is not None or not spec.posting_institute:
        return found
    # Projects are posted by Belgian research institutes (FSDB); the proposal carries these facts
    # and check_rules accepts them only for the member flagged as posting institute.
    return CompanyProfile(
        id=target.institute, name=target.institute, country="BE", organisation_type="research", size="large"
    )


def _lead_options(
    target: Target, spec: ProgrammeSpec, pool: Sequence[CompanyProfile], institute: CompanyProfile | None
) -> list[CompanyProfile]:
    """Plausible leads, most plausible first (pool is in relevance order)."""
    if spec.posting_institute and institute is not None and institute.organisation_type == "research":
        return [institute]
    if spec.research_lead or spec.needs_research:
        research = [p for p in pool if p.organisation_type == "research"]
        return research or list(pool)
    if spec.single_company or spec.applicant_company:
        companies = [p for p in pool if p.organisation_type == "company" and normalise_country(p.country) != ""]
        if spec.applicant_company:
            companies = [p for p in companies if normalise_country(p.country) == "BE"]
        return companies
    if target.programme == "EDF":
        # Someone who has led EDF-size projects, else a large company or research organisation.
        seasoned = [p for p in pool if has_coordinated(p)]
        big = [p for p in pool if not has_coordinated(p) and (p.size == "large" or p.organisation_type == "research")]
        return seasoned + big
    return list(pool)


class _Builder:
    """State of one proposal under construction."""

    def __init__(self, needs: Sequence[Need], covered_by: Callable[[CompanyProfile], set[int]]) -> None:
        self.members: list[CompanyProfile] = []
        self.ids: set[str] = set()
        self.needs = needs
        self.uncovered = set(range(len(needs)))
        self.covered_by = covered_by

    def add(self, profile: CompanyProfile) -> None:
        if profile.id not in self.ids:
            self.members.append(profile)
            self.ids.add(profile.id)
            self.uncovered -= self.covered_by(profile)

    def countries(self) -> set[str]:
        return {normalise_country(m.country) for m in self.members}

    def groups(self) -> set[str]:
        return {group_of(m) for m in self.members}


def propose_consortia(
    target: Target,
    ranked: Sequence[Suggestion],
    profiles: Mapping[str, CompanyProfile],
    max_proposals: int = 3,
    *,
    taxonomy: TaxonomyIndex | None = None,
    size: int | None = None,
) -> list[ConsortiumProposal]:
    """Up to ``max_proposals`` consortia that pass every rule of the target's programme."""
    tax = taxonomy or load_index()
    spec = spec_for(target.programme)
    rule = country_rules(tax).get(target.programme, country_rules(tax)["OTHER"])
    relevance = {s.company_id: s.score for s in ranked}
    pool = [
        profiles[s.company_id]
        for s in ranked
        if s.company_id in profiles and rule.accepts(profiles[s.company_id].country)
    ]
    institute = _institute(target, spec, profiles)
    needs = needs_of(target, tax)
    cache: dict[str, set[int]] = {}

    def covered_by(profile: CompanyProfile) -> set[int]:
        if profile.id not in cache:
            cache[profile.id] = {i for i, need in enumerate(needs) if covers(need, profile, tax).covered}
        return cache[profile.id]

    wanted = max(spec.typical_min, min(spec.typical_max, size or proposal_size(target, spec)))
    proposals: list[ConsortiumProposal] = []
    seen: set[frozenset[str]] = set()
    for lead in _lead_options(target, spec, pool, institute)[: max_proposals * 4]:
        if len(proposals) >= max_proposals:
            break
        proposal = _build(target, spec, lead, institute, pool, needs, covered_by, relevance, wanted, tax)
        if proposal is None:
            continue
        key = frozenset(m.company_id for m in proposal.members)
        if key in seen:
            continue
        checks = check_rules(proposal, target, profiles, tax)
        if all(c.passed for c in checks):
            seen.add(key)
            proposals.append(proposal.model_copy(update={"rules": checks}))
    proposals.sort(key=lambda p: -p.score)
    return [p.model_copy(update={"rank": i + 1}) for i, p in enumerate(proposals)]


def _build(
    target: Target,
    spec: ProgrammeSpec,
    lead: CompanyProfile,
    institute: CompanyProfile | None,
    pool: Sequence[CompanyProfile],
    needs: Sequence[Need],
    covered_by: Callable[[CompanyProfile], set[int]],
    relevance: Mapping[str, float],
    wanted: int,
    tax: TaxonomyIndex,
) -> ConsortiumProposal | None:
    b = _Builder(needs, covered_by)
    b.add(lead)
    if spec.posting_institute and institute is not None:
        b.add(institute)
    others = [p for p in pool if p.id not in b.ids]

    def room() -> bool:
        return len(b.members) < spec.max_members

    # Needs first: the candidate answering most open needs, ties broken by rank.
    while b.uncovered and room() and not spec.single_company:
        best = max(others, key=lambda p: (len(covered_by(p) & b.uncovered), relevance.get(p.id, 0.0)), default=None)
        if best is None or not covered_by(best) & b.uncovered:
            break
        b.add(best)
        others.remove(best)
    if spec.min_countries > 1:
        while len(b.countries()) < spec.min_countries and room():
            fresh = next((p for p in others if normalise_country(p.country) not in b.countries()), None)
            if fresh is None:
                break
            b.add(fresh)
            others.remove(fresh)
    if spec.independent_entities:
        while len(b.groups()) < spec.independent_entities and room():
            fresh = next((p for p in others if group_of(p) not in b.groups()), None)
            if fresh is None:
                break
            b.add(fresh)
            others.remove(fresh)
    if spec.needs_sme and not any(m.is_sme for m in b.members) and room():
        sme = next((p for p in others if p.is_sme), None)
        if sme is not None:
            b.add(sme)
            others.remove(sme)
    if spec.needs_research and not any(m.organisation_type == "research" for m in b.members) and room():
        research = next((p for p in others if p.organisation_type == "research"), None)
        if research is not None:
            b.add(research)
            others.remove(research)
    while len(b.members) < wanted and others and not spec.single_company:
        b.add(others.pop(0))
    if len(b.members) < spec.typical_min:
        return None
    return _proposal(target, b, lead, institute, needs, relevance, tax)


def _proposal(
    target: Target,
    b: _Builder,
    lead: CompanyProfile,
    institute: CompanyProfile | None,
    needs: Sequence[Need],
    relevance: Mapping[str, float],
    tax: TaxonomyIndex,
) -> ConsortiumProposal:
    coverage: list[NeedCoverage] = []
    member_covers: dict[str, list[str]] = {m.id: [] for m in b.members}
    for need in needs:
        best: tuple[float, CompanyProfile, str] | None = None
        for m in b.members:
            evidence = covers(need, m, tax)
            if evidence.covered:
                member_covers[m.id].append(need.text)
                if best is None or evidence.similarity > best[0]:
                    best = (evidence.similarity, m, evidence.detail)
        if best is None:
            coverage.append(NeedCoverage(need=need.text, company_id=None))
        else:
            coverage.append(NeedCoverage(need=need.text, company_id=best[1].id, evidence=best[2], similarity=best[0]))
    members = [
        ConsortiumMember(
            company_id=m.id,
            company_name=m.name,
            country=normalise_country(m.country),
            role="coordinator" if m.id == lead.id else "partner",
            covers=member_covers[m.id],
            organisation_type=m.organisation_type,
            size=m.size,
            parent_group=m.parent_group,
            posting_institute=institute is not None and m.id == institute.id,
        )
        for m in b.members
    ]
    covered = sum(1 for c in coverage if c.company_id) / len(coverage) if coverage else 1.0
    mean_relevance = sum(relevance.get(m.id, 0.0) for m in b.members) / len(b.members)
    return ConsortiumProposal(
        rank=1,
        score=round(min(1.0, max(0.0, mean_relevance * covered)), 6),
        programme=target.programme,
        members=members,
        coverage=coverage,
    )
