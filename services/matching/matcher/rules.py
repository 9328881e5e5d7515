"""The matcher's side of the programme rules: ``check_rules``, an independent verification of a proposal.

The rules themselves are pure functions of member facts in :mod:`shared.consortium_rules`, so a real
roster is judged by the same code as a proposal (``check_consortium``). This module turns the matcher's
profiles into those facts and works out which members are unknown and which needs nobody covers.

``check_rules`` trusts nothing the proposal says about itself: countries, sizes, types, groups and
need coverage are re-derived from the profiles (a member that is not a known profile is only
accepted as the posting institute of a project, whose facts the proposal carries).
"""

from __future__ import annotations

from collections.abc import Mapping

from services.matching.matcher.eligibility import country_rules
from services.matching.matcher.features import normalise_key
from services.matching.matcher.models import CompanyProfile, ConsortiumMember, ConsortiumProposal, RuleCheck, Target
from shared.consortium_rules import (
    SPECS,
    Member,
    ProgrammeSpec,
    Roster,
    check_consortium,
    control_group,
    coordinated_before,
    spec_for,
)
from shared.coverage import covers, needs_of
from shared.taxonomy_index import TaxonomyIndex, load_index

__all__ = [
    "SPECS",
    "ProgrammeSpec",
    "check_rules",
    "group_of",
    "has_coordinated",
    "is_posting_institute",
    "member_facts",
    "spec_for",
]


def group_of(profile: CompanyProfile) -> str:
    """Control group: the parent group when known, else the entity itself."""
    return control_group(profile.parent_group, profile.id)


def has_coordinated(profile: CompanyProfile) -> bool:
    """Led a funded project before (its history says so)."""
    return coordinated_before(h.role for h in profile.history)


def is_posting_institute(profile: CompanyProfile, target: Target) -> bool:
    if not target.institute:
        return False
    wanted = {normalise_key(target.institute), f"id:{target.institute.strip()}"}
    keys = {normalise_key(profile.name), f"id:{profile.id}"}
    if profile.pic:
        keys.add(normalise_key(profile.pic))
    return bool(wanted & keys)


def member_facts(profile: CompanyProfile, target: Target, *, coordinator: bool) -> Member:
    """What the programme rules need to know about a profile taking part in a consortium for ``target``."""
    return Member(
        id=profile.id,
        name=profile.name,
        country=profile.country,
        organisation_type=profile.organisation_type,
        size=profile.size,
        parent_group=profile.parent_group,
        coordinator=coordinator,
        has_coordinated=has_coordinated(profile),
        posting_institute=is_posting_institute(profile, target),
    )


def _resolve(
    proposal: ConsortiumProposal, profiles: Mapping[str, CompanyProfile]
) -> tuple[list[tuple[ConsortiumMember, CompanyProfile]], list[str]]:
    """(member, profile) pairs, and the ids that are not known; only the posting institute may be unregistered."""
    known: list[tuple[ConsortiumMember, CompanyProfile]] = []
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
            known.append((m, profile))
    return known, unknown


def check_rules(
    proposal: ConsortiumProposal,
    target: Target,
    profiles: Mapping[str, CompanyProfile],
    taxonomy: TaxonomyIndex | None = None,
) -> list[RuleCheck]:
    """Every rule of the target's programme, re-checked against the profiles.

    Unknown members are left out of the roster (and fail ``known_members``), so the structural
    rules judge only what the profiles show.
    """
    tax = taxonomy or load_index()
    country_rule = country_rules(tax).get(target.programme, country_rules(tax)["OTHER"])
    known, unknown = _resolve(proposal, profiles)
    roster = Roster(
        programme=target.programme,
        members=tuple(member_facts(p, target, coordinator=m.role == "coordinator") for m, p in known),
        countries=country_rule.countries,
        country_label=country_rule.label,
        institute=target.institute,
    )
    needs = needs_of(target, tax)
    members = [p for _, p in known]
    uncovered = [need.text for need in needs if not any(covers(need, m, tax).covered for m in members)]
    return check_consortium(roster, unknown=unknown, needs=len(needs), uncovered=uncovered)
