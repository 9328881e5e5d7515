"""The live check of a real roster (services/consortia/roster.py) with the matcher's own rule functions."""

from __future__ import annotations

from typing import Any

from services.consortia.roster import Participant, Prospect, TargetFacts, check
from shared.events.companies import CompanyProfileData

EDF_CALL = TargetFacts(
    id="EDF-2026-RA-SENS-RF",
    title="RF sensing against small drones",
    programme="EDF",
    description="<p>Passive RF detection of small drones</p>",
    edf_category="SENS",
    domains=("aviation-counter-uas",),
)


def org(name: str, country: str, *, size: str = "small", group: str | None = None, **over: Any) -> CompanyProfileData:
    return CompanyProfileData(
        id=name.lower().replace(" ", "-"),
        name=name,
        country=country,
        city="x",
        organisation_type=over.pop("organisation_type", "company"),
        size=size,
        domains=over.pop("domains", ["aviation-counter-uas"]),
        capabilities=over.pop("capabilities", ["Passive RF detection of drones"]),
        parent_group=group,
        **over,
    )


def roster(*profiles: CompanyProfileData) -> list[Participant]:
    return [Participant(p.id, p.name, coordinator=i == 0, profile=p) for i, p in enumerate(profiles)]


def verdict(report: Any) -> dict[str, bool]:
    return {r.rule: r.ok for r in report.rules}


SENS_DOMAINS = ["aviation-counter-uas", "environment-geo-intelligence", "artificial-intelligence"]


def test_an_edf_roster_of_independent_groups_in_enough_countries_passes_and_covers_the_calls_domains() -> None:
    members = [org("Prime Defence", "FR", size="large", domains=SENS_DOMAINS)]
    members += [org(f"Partner {c}", c, domains=SENS_DOMAINS) for c in ("BE", "NL", "DE", "IT", "ES")]
    report = check(target=EDF_CALL, participants=roster(*members), unknown=[], prospects=[], taken=set())
    assert report.passed, [r for r in report.rules if not r.ok]
    assert [n.need for n in report.coverage] == SENS_DOMAINS  # a call's needs are its category's domains
    assert report.gaps == []


def test_a_legal_but_small_edf_roster_fails_only_the_usual_size_and_the_uncovered_domains() -> None:
    members = roster(org("Prime Defence", "FR", size="large"), org("Sensor SME", "BE"), org("Radio Lab", "NL"))
    report = check(target=EDF_CALL, participants=members, unknown=[], prospects=[], taken=set())
    assert {r.rule: r.why for r in report.rules if not r.ok} == {
        "typical_size": "3 members; EDF usually funds 6-20",
        "needs_covered": "uncovered: environment-geo-intelligence, artificial-intelligence",
    }


def test_an_edf_roster_controlled_by_one_group_fails_independence_and_says_why() -> None:
    members = roster(
        org("Prime Defence", "FR", size="large", group="Prime"),
        org("Prime Belgium", "BE", group="Prime"),
        org("Prime Nederland", "NL", group="Prime"),
    )
    report = check(target=EDF_CALL, participants=members, unknown=[], prospects=[], taken=set())
    assert verdict(report)["min_countries"] and not verdict(report)["independent_entities"]
    why = next(r.why for r in report.rules if r.rule == "independent_entities")
    assert why.startswith("1 independent control groups; needs >= 3")


def test_a_member_outside_the_eligible_countries_and_an_unknown_member_fail_by_name() -> None:
    members = roster(org("Prime Defence", "FR", size="large"), org("Yankee Sensors", "US"), org("Radio Lab", "NL"))
    report = check(target=EDF_CALL, participants=members, unknown=["gone-company"], prospects=[], taken=set())
    checks = {r.rule: r for r in report.rules}
    assert not checks["eligible_countries"].ok and checks["eligible_countries"].why == "not eligible: Yankee Sensors"
    assert not checks["known_members"].ok and "gone-company" in checks["known_members"].why


def test_an_uncovered_need_lists_ranked_prospects_first_and_never_one_already_taken() -> None:
    project = TargetFacts(
        id="p1",
        title="Tunnels",
        programme="FSDB",
        institute="Lab",
        sought_capabilities=("Quantum gravimetry for tunnel detection",),
    )
    fits = [org(f"Gravity {n}", "BE", capabilities=["Quantum gravimetry for tunnel detection"]) for n in "ABCD"]
    lead = Participant("Lab", "Lab", coordinator=True, profile=None)  # an unregistered institute leads
    prospects = [Prospect(fits[2], 1), Prospect(org("Bakery", "BE", capabilities=["Bread"]), 2), Prospect(fits[0], 3)]
    prospects += [Prospect(fits[3], None), Prospect(fits[1], None)]
    report = check(
        target=project, participants=[lead], unknown=[], prospects=prospects, taken={fits[0].id}, max_candidates=2
    )
    assert verdict(report)["posting_institute"] and verdict(report)["research_lead"]
    assert not verdict(report)["needs_covered"] and not verdict(report)["min_entities"]
    assert [(c.name, c.rank) for c in report.gaps[0].candidates] == [("Gravity C", 1), ("Gravity D", None)]
