"""The programme rules of shared/consortium_rules.py, one rule at a time, on plain member facts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.consortium_rules import (
    Member,
    Roster,
    check_roster,
    has_independent_core,
    roster,
    rules_for,
    spec_for,
)
from shared.taxonomy import load_taxonomy


def member(mid: str, country: str, **facts: object) -> Member:
    return Member(id=mid, name=mid.upper(), country=country, **facts)  # type: ignore[arg-type]


def edf(*members: Member) -> Roster:
    return roster("EDF", members, load_taxonomy())


def failed(r: Roster) -> set[str]:
    return {c.rule for c in check_roster(r) if not c.passed}


def _edf_team() -> list[Member]:
    lead = member("lead", "FR", size="large", coordinator=True)
    team = [member(f"m{i}", c) for i, c in enumerate(["DE", "IT", "ES", "BE", "NL"])]
    return [lead, *team]


def test_a_well_formed_edf_consortium_passes_every_rule() -> None:
    checks = check_roster(edf(*_edf_team()))
    assert [c.rule for c in checks] == [
        "distinct_members",
        "min_entities",
        "typical_size",
        "eligible_countries",
        "one_coordinator",
        "min_countries",
        "independent_entities",
        "sme_participation",
        "plausible_coordinator",
    ]
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_edf_needs_three_entities_from_three_eligible_countries() -> None:
    two = edf(member("a", "FR", coordinator=True, size="large"), member("b", "FR"))
    assert failed(two) >= {"min_entities", "typical_size", "min_countries", "independent_entities"}
    swiss = edf(*_edf_team(), member("ch", "CH"))
    check = next(c for c in check_roster(swiss) if c.rule == "eligible_countries")
    assert not check.passed and "CH" in check.detail
    # Greece and the UK as the EU writes them: EL is a member state, UK is not.
    assert "eligible_countries" not in failed(edf(*_edf_team(), member("gr", "EL")))
    assert "eligible_countries" in failed(edf(*_edf_team(), member("uk", "UK")))


def test_independent_entities_need_different_control_groups_in_two_countries() -> None:
    a, b, c = (member(x, cc, parent_group="G") for x, cc in [("a", "FR"), ("b", "DE"), ("c", "IT")])
    assert not has_independent_core([a, b, c], 3, 2)  # one group controls all three
    d, e = member("d", "FR"), member("e", "FR")
    assert not has_independent_core([a, d, e], 3, 2)  # three groups, but all in France
    assert has_independent_core([a, b, d, e], 3, 2)  # group G can be represented by its German member
    same_group = edf(*[m if m.coordinator else replace(m, parent_group="g") for m in _edf_team()])
    assert "independent_entities" in failed(same_group)


def test_edf_wants_an_sme_and_a_plausible_coordinator() -> None:
    no_sme = [replace(m, size="large") for m in _edf_team()]
    assert failed(edf(*no_sme)) == {"sme_participation"}
    small_lead = [replace(m, size="small") if m.coordinator else m for m in _edf_team()]
    assert failed(edf(*small_lead)) == {"plausible_coordinator"}
    seasoned = [replace(m, has_coordinated=True) if m.coordinator else m for m in small_lead]
    assert failed(edf(*seasoned)) == set()


def test_exactly_one_coordinator_and_distinct_members() -> None:
    team = _edf_team()
    assert "one_coordinator" in failed(edf(*[replace(m, coordinator=False) for m in team]))
    assert "one_coordinator" in failed(edf(*team, member("x", "PL", coordinator=True)))
    assert "distinct_members" in failed(edf(*team, team[1]))


def test_fsdb_is_led_by_the_posting_research_institute() -> None:
    tax = load_taxonomy()
    institute = member("imec", "BE", organisation_type="research", coordinator=True, posting_institute=True)
    partner = member("acme", "BE")
    assert failed(roster("FSDB", [institute, partner], tax, institute="imec")) == set()
    led_by_company = [member("imec", "BE", organisation_type="research", posting_institute=True)]
    led_by_company.append(member("acme", "BE", coordinator=True))
    assert failed(roster("FSDB", led_by_company, tax, institute="imec")) == {"research_lead"}
    without = [member("kul", "BE", organisation_type="research", coordinator=True), partner]
    assert failed(roster("FSDB", without, tax, institute="imec")) == {"posting_institute"}
    assert "eligible_countries" in failed(roster("FSDB", [institute, member("fr", "FR")], tax, institute="imec"))


def test_diana_is_one_company_from_a_nato_country() -> None:
    tax = load_taxonomy()
    assert failed(roster("DIANA", [member("a", "US", coordinator=True)], tax)) == set()
    assert "eligible_countries" in failed(roster("DIANA", [member("a", "CH", coordinator=True)], tax))
    pair = [member("a", "US", coordinator=True), member("b", "CA")]
    assert {"single_company", "typical_size"} <= failed(roster("DIANA", pair, tax))
    institute = [member("a", "US", coordinator=True, organisation_type="research")]
    assert failed(roster("DIANA", institute, tax)) == {"single_company"}


@pytest.mark.parametrize(
    ("country", "region", "ok"),
    [("BE", None, True), ("BE", "BE2", True), ("BE", "BE3", False), ("BE", "be2", True)],
)
def test_vlaio_applicant_is_established_in_flanders_when_the_region_is_known(
    country: str, region: str | None, ok: bool
) -> None:
    applicant = member("a", country, coordinator=True, region=region)
    check = next(
        c for c in check_roster(roster("VLAIO", [applicant], load_taxonomy())) if c.rule == "belgian_applicant"
    )
    assert check.passed is ok


def test_defra_needs_a_research_partner_and_unknown_programmes_only_the_basics() -> None:
    tax = load_taxonomy()
    companies = [member("a", "BE", coordinator=True), member("b", "BE")]
    assert failed(roster("DEFRA", companies, tax)) == {"research_partner"}
    assert [r.__name__ for r in rules_for(spec_for("SOMETHING-NEW"))] == [
        "distinct_members",
        "min_entities",
        "typical_size",
        "eligible_countries",
        "one_coordinator",
    ]
    assert failed(roster("SOMETHING-NEW", [member("a", "JP", coordinator=True)], tax)) == set()
