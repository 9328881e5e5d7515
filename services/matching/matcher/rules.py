"""Programme rules for consortia, and ``check_rules``: an independent verification of a proposal.

``check_rules`` trusts nothing the proposal says about itself: countries, sizes, types, groups and
need coverage are re-derived from the profiles (a member that is not a known profile is only
accepted as the posting institute of a project, whose facts the proposal carries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.matching.matcher.coverage import covers, needs_of
from services.matching.matcher.eligibility import country_rules
from services.matching.matcher.features import COORDINATOR_ROLES, normalise_key
from services.matching.matcher.models import SME_SIZES, CompanyProfile, ConsortiumProposal, RuleCheck, Target
from services.matching.matcher.taxonomy import Taxonomy, load_taxonomy, normalise_country


@dataclass(frozen=True)
class ProgrammeSpec:
    """Consortium shape a programme requires (legal minimum) and usually funds (typical size range)."""

    min_members: int
    typical_min: int
    typical_max: int
    default_size: int
    min_countries: int = 1
    independent_entities: int = 0
    independent_countries: int = 0
    needs_sme: bool = False
    research_lead: bool = False
    needs_research: bool = False
    posting_institute: bool = False
    single_company: bool = False
    applicant_company: bool = False

    @property
    def max_members(self) -> int:
        return self.typical_max


SPECS: dict[str, ProgrammeSpec] = {
    # EDF Regulation art. 10(1): >= 3 entities from >= 3 member states/associated countries, >= 3 of
    # them, in >= 2 of those countries, not controlled by the same entity. Funded consortia usually
    # have 6-20 members and the work programme rewards SME participation.
    "EDF": ProgrammeSpec(
        3, 6, 20, 12, min_countries=3, independent_entities=3, independent_countries=2, needs_sme=True
    ),
    # FSDB: the posting research institute leads, with at least one partner; small consortia.
    "FSDB": ProgrammeSpec(2, 2, 6, 3, posting_institute=True, research_lead=True),
    "DEFRA": ProgrammeSpec(2, 2, 8, 4, needs_research=True),
    "DIANA": ProgrammeSpec(1, 1, 1, 1, single_company=True),
    "VLAIO": ProgrammeSpec(1, 1, 5, 2, applicant_company=True),
    "OTHER": ProgrammeSpec(1, 1, 20, 5),
}


def spec_for(programme: str) -> ProgrammeSpec:
    return SPECS.get(programme, SPECS["OTHER"])


def group_of(profile: CompanyProfile) -> str:
    """Control group: the parent group when known, else the entity itself."""
    return (profile.parent_group or "").strip().lower() or f"self:{profile.id}"


def is_posting_institute(profile: CompanyProfile, target: Target) -> bool:
    if not target.institute:
        return False
    wanted = {normalise_key(target.institute), f"id:{target.institute.strip()}"}
    keys = {normalise_key(profile.name), f"id:{profile.id}"}
    if profile.pic:
        keys.add(normalise_key(profile.pic))
    return bool(wanted & keys)


def has_independent_core(members: list[CompanyProfile], entities: int, countries: int) -> bool:
    """Are there ``entities`` members of pairwise different control groups spanning ``countries``?

    Pick one member per group: enough groups are needed, and ``countries`` of those groups must be
    representable by pairwise different countries — a bipartite matching between groups and
    countries (tiny, so simple augmenting paths do).
    """
    by_group: dict[str, set[str]] = {}
    for m in members:
        by_group.setdefault(group_of(m), set()).add(normalise_country(m.country))
    if len(by_group) < entities:
        return False
    owner: dict[str, str] = {}

    def augment(group: str, seen: set[str]) -> bool:
        for country in sorted(by_group[group]):
            if country in seen:
                continue
            seen.add(country)
            if country not in owner or augment(owner[country], seen):
                owner[country] = group
                return True
        return False

    matched = sum(1 for group in by_group if augment(group, set()))
    return matched >= countries


def _check(rule: str, passed: bool, detail: str) -> RuleCheck:
    return RuleCheck(rule=rule, passed=bool(passed), detail=detail)


def check_rules(
    proposal: ConsortiumProposal,
    target: Target,
    profiles: Mapping[str, CompanyProfile],
    taxonomy: Taxonomy | None = None,
) -> list[RuleCheck]:
    """Every rule of the target's programme, re-checked against the profiles."""
    tax = taxonomy or load_taxonomy()
    spec = spec_for(target.programme)
    country_rule = country_rules(tax).get(target.programme, country_rules(tax)["OTHER"])
    checks: list[RuleCheck] = []

    # Resolve members to profiles; only the posting institute may be outside the registry.
    members: list[CompanyProfile] = []
    unknown: list[str] = []
    for m in proposal.members:
        profile = profiles.get(m.company_id)
        if profile is None and m.posting_institute:
            profile = CompanyProfile(
                id=m.company_id,
                name=m.company_name,
                country=m.country,
                organisation_type=m.organisation_type,
                size=m.size,
                parent_group=m.parent_group,
            )
        if profile is None:
            unknown.append(m.company_id)
        else:
            members.append(profile)
    ids = [m.company_id for m in proposal.members]
    checks.append(
        _check("known_members", not unknown, "all members are registered" if not unknown else f"unknown: {unknown}")
    )
    checks.append(_check("distinct_members", len(set(ids)) == len(ids), f"{len(set(ids))} distinct of {len(ids)}"))

    n = len(members)
    checks.append(
        _check(
            "min_entities",
            n >= spec.min_members,
            f"{n} entities; {target.programme} requires at least {spec.min_members}",
        )
    )
    checks.append(
        _check(
            "typical_size",
            spec.typical_min <= n <= spec.typical_max,
            f"{n} members; {target.programme} usually funds {spec.typical_min}-{spec.typical_max}",
        )
    )
    outside = [m.name for m in members if not country_rule.accepts(m.country)]
    checks.append(
        _check(
            "eligible_countries",
            not outside,
            f"all established in {country_rule.label}" if not outside else f"not eligible: {', '.join(outside)}",
        )
    )
    coordinators = [m for m in proposal.members if m.role == "coordinator"]
    checks.append(_check("one_coordinator", len(coordinators) == 1, f"{len(coordinators)} coordinator(s)"))
    lead = next((p for p in members if coordinators and p.id == coordinators[0].company_id), None)

    countries = {normalise_country(m.country) for m in members}
    if spec.min_countries > 1:
        checks.append(
            _check(
                "min_countries",
                len(countries) >= spec.min_countries,
                f"{len(countries)} countries ({', '.join(sorted(countries))}); needs >= {spec.min_countries}",
            )
        )
    if spec.independent_entities:
        ok = has_independent_core(members, spec.independent_entities, spec.independent_countries)
        groups = len({group_of(m) for m in members})
        checks.append(
            _check(
                "independent_entities",
                ok,
                f"{groups} independent control groups; needs >= {spec.independent_entities} in "
                f">= {spec.independent_countries} countries not controlled by the same group",
            )
        )
    if spec.needs_sme:
        smes = [m.name for m in members if m.size in SME_SIZES]
        checks.append(
            _check("sme_participation", bool(smes), f"{len(smes)} SME(s)" + (f": {smes[0]}…" if smes else ""))
        )
    if target.programme == "EDF" and lead is not None:
        coordinated = any((h.role or "").lower() in COORDINATOR_ROLES for h in lead.history)
        plausible = coordinated or lead.size == "large" or lead.organisation_type == "research"
        why = "has coordinated before" if coordinated else f"{lead.size} {lead.organisation_type}"
        checks.append(_check("plausible_coordinator", plausible, f"{lead.name}: {why}"))
    if spec.posting_institute:
        present = any(is_posting_institute(m, target) for m in members) if target.institute else False
        checks.append(
            _check(
                "posting_institute",
                present,
                f"posting institute {target.institute!r} is a member" if present else "posting institute missing",
            )
        )
    if spec.research_lead:
        ok = lead is not None and lead.organisation_type == "research"
        checks.append(
            _check(
                "research_lead", ok, f"lead: {lead.name if lead else None} ({lead.organisation_type if lead else '-'})"
            )
        )
    if spec.needs_research:
        ok = any(m.organisation_type == "research" for m in members)
        checks.append(
            _check("research_partner", ok, "a research organisation takes part" if ok else "no research organisation")
        )
    if spec.single_company:
        ok = n == 1 and members[0].organisation_type == "company"
        checks.append(_check("single_company", ok, "one company applies" if ok else f"{n} members"))
    if spec.applicant_company:
        ok = lead is not None and normalise_country(lead.country) == "BE"
        checks.append(
            _check(
                "belgian_applicant",
                ok,
                f"applicant {lead.name if lead else None} in BE" if ok else "applicant not Belgian",
            )
        )

    needs = needs_of(target, tax)
    uncovered = [need.text for need in needs if not any(covers(need, m, tax).covered for m in members)]
    checks.append(
        _check(
            "needs_covered",
            not uncovered,
            f"all {len(needs)} needs covered" if not uncovered else f"uncovered: {', '.join(uncovered)}",
        )
    )
    return checks
