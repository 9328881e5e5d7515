"""Programme rules for a consortium, as pure functions of what is known about its members.

One rule, one function: each takes a :class:`Roster` (the programme, the members' facts, the
countries the programme accepts) and returns a ``RuleCheck`` — the rule's name, whether it passed,
and a sentence saying why. ``check_roster`` runs every rule of the roster's programme.

Both the matcher (to verify the consortia it proposes) and any service that checks a real roster
use this module, so a proposal and an assembled consortium are judged by the same rules. It knows
nothing about rankings, profiles or the registry: callers turn whatever they hold into
:class:`Member` facts.

Sources: EDF — Regulation (EU) 2021/697 art. 10(1) (>= 3 eligible legal entities from >= 3 member
states or associated countries, >= 3 of them in >= 2 of those countries not controlled by the same
entity) and the work programme's SME bonus; FSDB — consortia of >= 2 entities led by a research
institute; VLAIO — the applicant has an establishment in Flanders; NATO DIANA — one company applies
alone (see docs in the brief, §4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from shared.events.suggestions import RuleCheck
from shared.taxonomy import Taxonomy, normalise_country

__all__ = [
    "COORDINATOR_ROLES",
    "COUNTRY_LABELS",
    "SME_SIZES",
    "SPECS",
    "Member",
    "ProgrammeSpec",
    "Roster",
    "RuleCheck",
    "check_consortium",
    "check_roster",
    "control_group",
    "coordinated_before",
    "has_independent_core",
    "known_members",
    "needs_covered",
    "roster",
    "rules_for",
    "spec_for",
]

SME_SIZES: frozenset[str] = frozenset({"micro", "small", "medium"})

COORDINATOR_ROLES: frozenset[str] = frozenset({"coordinator", "coord", "lead", "leader"})
"""Roles in a project history that mean the organisation led that project."""

FLANDERS = "BE2"
"""NUTS-1 code of the Flemish Region (Vlaams Gewest)."""

COUNTRY_LABELS: dict[str, str] = {
    "EDF": "an EU member state or Norway",
    "VLAIO": "Belgium",
    "FSDB": "Belgium",
    "DEFRA": "Belgium",
    "DIANA": "a NATO member",
    "OTHER": "any country",
}
"""How a sentence names each programme's accepted countries (the countries come from the taxonomy)."""


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
    plausible_coordinator: bool = False

    @property
    def max_members(self) -> int:
        return self.typical_max


SPECS: dict[str, ProgrammeSpec] = {
    # EDF: funded consortia usually have 6-20 members and the work programme rewards SMEs.
    "EDF": ProgrammeSpec(
        3,
        6,
        20,
        12,
        min_countries=3,
        independent_entities=3,
        independent_countries=2,
        needs_sme=True,
        plausible_coordinator=True,
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


def control_group(parent_group: str | None, member_id: str) -> str:
    """Control group: the parent group when known, else the entity itself."""
    return (parent_group or "").strip().lower() or f"self:{member_id}"


def coordinated_before(roles: Iterable[str | None]) -> bool:
    """Whether any of an organisation's past roles (its project history) was leading the project."""
    return any((role or "").lower() in COORDINATOR_ROLES for role in roles)


@dataclass(frozen=True)
class Member:
    """What the rules need to know about one member of a consortium."""

    id: str
    name: str
    country: str  # ISO 3166-1 alpha-2 (EU-style EL/UK accepted)
    organisation_type: str = "company"  # company | research | public | other
    size: str = "small"  # micro | small | medium | large
    parent_group: str | None = None
    coordinator: bool = False  # leads this consortium
    has_coordinated: bool = False  # has led a funded project before
    posting_institute: bool = False  # the organisation that posted the project
    region: str | None = None  # NUTS-1 code of its establishment when known (BE2 = Flanders)

    @property
    def is_sme(self) -> bool:
        return self.size in SME_SIZES

    @property
    def group(self) -> str:
        return control_group(self.parent_group, self.id)

    @property
    def country_code(self) -> str:
        return normalise_country(self.country)


@dataclass(frozen=True)
class Roster:
    """A consortium to check: its programme, its members and the countries the programme accepts."""

    programme: str
    members: tuple[Member, ...]
    countries: frozenset[str] | None  # None: any country
    country_label: str
    institute: str | None = None  # who posted the project, when a programme needs it to take part

    @property
    def spec(self) -> ProgrammeSpec:
        return spec_for(self.programme)

    @property
    def lead(self) -> Member | None:
        return next((m for m in self.members if m.coordinator), None)

    def country_set(self) -> set[str]:
        return {m.country_code for m in self.members}


def roster(programme: str, members: Sequence[Member], taxonomy: Taxonomy, *, institute: str | None = None) -> Roster:
    """A roster whose accepted countries come from the taxonomy's programme rule."""
    known = programme if programme in COUNTRY_LABELS else "OTHER"
    return Roster(
        programme=programme,
        members=tuple(members),
        countries=taxonomy.eligible_countries(known),
        country_label=COUNTRY_LABELS[known],
        institute=institute,
    )


def has_independent_core(members: Sequence[Member], entities: int, countries: int) -> bool:
    """Are there ``entities`` members of pairwise different control groups spanning ``countries``?

    Pick one member per group: enough groups are needed, and ``countries`` of those groups must be
    representable by pairwise different countries — a bipartite matching between groups and
    countries (tiny, so simple augmenting paths do).
    """
    by_group: dict[str, set[str]] = {}
    for m in members:
        by_group.setdefault(m.group, set()).add(m.country_code)
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


def _result(rule: str, passed: bool, detail: str) -> RuleCheck:
    return RuleCheck(rule=rule, passed=bool(passed), detail=detail)


# ---- rules every programme has ------------------------------------------------------------------
def distinct_members(r: Roster) -> RuleCheck:
    ids = [m.id for m in r.members]
    return _result("distinct_members", len(set(ids)) == len(ids), f"{len(set(ids))} distinct of {len(ids)}")


def min_entities(r: Roster) -> RuleCheck:
    n, least = len(r.members), r.spec.min_members
    return _result("min_entities", n >= least, f"{n} entities; {r.programme} requires at least {least}")


def typical_size(r: Roster) -> RuleCheck:
    n, spec = len(r.members), r.spec
    return _result(
        "typical_size",
        spec.typical_min <= n <= spec.typical_max,
        f"{n} members; {r.programme} usually funds {spec.typical_min}-{spec.typical_max}",
    )


def eligible_countries(r: Roster) -> RuleCheck:
    outside = [m.name for m in r.members if r.countries is not None and m.country_code not in r.countries]
    detail = f"all established in {r.country_label}" if not outside else f"not eligible: {', '.join(outside)}"
    return _result("eligible_countries", not outside, detail)


def one_coordinator(r: Roster) -> RuleCheck:
    count = sum(1 for m in r.members if m.coordinator)
    return _result("one_coordinator", count == 1, f"{count} coordinator(s)")


# ---- rules of some programmes -------------------------------------------------------------------
def min_countries(r: Roster) -> RuleCheck:
    countries, least = r.country_set(), r.spec.min_countries
    return _result(
        "min_countries",
        len(countries) >= least,
        f"{len(countries)} countries ({', '.join(sorted(countries))}); needs >= {least}",
    )


def independent_entities(r: Roster) -> RuleCheck:
    spec = r.spec
    ok = has_independent_core(r.members, spec.independent_entities, spec.independent_countries)
    groups = len({m.group for m in r.members})
    return _result(
        "independent_entities",
        ok,
        f"{groups} independent control groups; needs >= {spec.independent_entities} in "
        f">= {spec.independent_countries} countries not controlled by the same group",
    )


def sme_participation(r: Roster) -> RuleCheck:
    smes = [m.name for m in r.members if m.is_sme]
    return _result("sme_participation", bool(smes), f"{len(smes)} SME(s)" + (f": {smes[0]}…" if smes else ""))


def plausible_coordinator(r: Roster) -> RuleCheck | None:
    """The lead has coordinated before, or is a large company or a research organisation."""
    lead = r.lead
    if lead is None:  # one_coordinator already fails; nothing to judge
        return None
    plausible = lead.has_coordinated or lead.size == "large" or lead.organisation_type == "research"
    why = "has coordinated before" if lead.has_coordinated else f"{lead.size} {lead.organisation_type}"
    return _result("plausible_coordinator", plausible, f"{lead.name}: {why}")


def posting_institute(r: Roster) -> RuleCheck:
    present = bool(r.institute) and any(m.posting_institute for m in r.members)
    detail = f"posting institute {r.institute!r} is a member" if present else "posting institute missing"
    return _result("posting_institute", present, detail)


def research_lead(r: Roster) -> RuleCheck:
    lead = r.lead
    ok = lead is not None and lead.organisation_type == "research"
    return _result(
        "research_lead", ok, f"lead: {lead.name if lead else None} ({lead.organisation_type if lead else '-'})"
    )


def research_partner(r: Roster) -> RuleCheck:
    ok = any(m.organisation_type == "research" for m in r.members)
    return _result("research_partner", ok, "a research organisation takes part" if ok else "no research organisation")


def single_company(r: Roster) -> RuleCheck:
    n = len(r.members)
    ok = n == 1 and r.members[0].organisation_type == "company"
    return _result("single_company", ok, "one company applies" if ok else f"{n} members")


def belgian_applicant(r: Roster) -> RuleCheck:
    """VLAIO: the applicant is established in Belgium — in Flanders, when its region is known."""
    lead = r.lead
    if lead is not None and lead.region is not None:
        ok = lead.country_code == "BE" and lead.region.upper() == FLANDERS
        where = "has an establishment in Flanders" if ok else f"is not established in Flanders ({lead.region})"
        return _result("belgian_applicant", ok, f"applicant {lead.name} {where}")
    ok = lead is not None and lead.country_code == "BE"
    return _result(
        "belgian_applicant", ok, f"applicant {lead.name if lead else None} in BE" if ok else "applicant not Belgian"
    )


# ---- rules about what is known of the members and the target (not of the programme) -------------
def known_members(unknown: Sequence[str]) -> RuleCheck:
    """Every member is a registered organisation whose facts the rules could judge."""
    detail = "all members are registered" if not unknown else f"unknown: {list(unknown)}"
    return _result("known_members", not unknown, detail)


def needs_covered(needs: int, uncovered: Sequence[str]) -> RuleCheck:
    """Every need of the target (sought capability, or domain for calls) is answered by some member."""
    detail = f"all {needs} needs covered" if not uncovered else f"uncovered: {', '.join(uncovered)}"
    return _result("needs_covered", not uncovered, detail)


Rule = Callable[[Roster], RuleCheck | None]

COMMON: tuple[Rule, ...] = (distinct_members, min_entities, typical_size, eligible_countries, one_coordinator)


def rules_for(spec: ProgrammeSpec) -> list[Rule]:
    """The rules a programme's spec switches on, in the order they are reported."""
    rules: list[Rule] = list(COMMON)
    optional: list[tuple[bool, Rule]] = [
        (spec.min_countries > 1, min_countries),
        (spec.independent_entities > 0, independent_entities),
        (spec.needs_sme, sme_participation),
        (spec.plausible_coordinator, plausible_coordinator),
        (spec.posting_institute, posting_institute),
        (spec.research_lead, research_lead),
        (spec.needs_research, research_partner),
        (spec.single_company, single_company),
        (spec.applicant_company, belgian_applicant),
    ]
    rules += [rule for wanted, rule in optional if wanted]
    return rules


def check_roster(r: Roster) -> list[RuleCheck]:
    """Every rule of the roster's programme, in a fixed order; rules with nothing to judge are left out."""
    return [check for rule in rules_for(r.spec) if (check := rule(r)) is not None]


def check_consortium(r: Roster, *, unknown: Sequence[str], needs: int, uncovered: Sequence[str]) -> list[RuleCheck]:
    """Everything a consortium is judged by: its members are known, the programme's rules, its needs covered.

    The matcher checks its proposals with this and the consortia service checks a real roster with
    it, so both say the same about the same members.
    """
    return [known_members(unknown), *check_roster(r), needs_covered(needs, uncovered)]
