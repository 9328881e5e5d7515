"""Consortium proposals satisfy the programme rules; check_rules catches violations."""

from __future__ import annotations

from services.matching.matcher import (
    CompanyProfile,
    ConsortiumMember,
    ConsortiumProposal,
    Matcher,
    Target,
    check_rules,
    propose_consortia,
)


def _edf_target() -> Target:
    return Target(
        target_type="call",
        id="EDF-2025-DA-UWW-SYN",
        title="Underwater sonar and autonomous underwater vehicles for mine countermeasures",
        programme="EDF",
        description="Sonar signal processing, autonomous underwater vehicles, naval integration.",
        edf_category="UWW",
        action_type="DA",
    )


def _fsdb_target(institute: str = "Be Institute") -> Target:
    return Target(
        target_type="project",
        id="FSDB-P1",
        title="Sonar processing for autonomous underwater vehicles",
        programme="FSDB",
        summary="Basic research on sonar signal processing on board autonomous underwater vehicles.",
        sought_capabilities=["sonar signal processing", "autonomous underwater vehicles"],
        domains=["maritime"],
        institute=institute,
        partners_wanted=2,
    )


def _propose(matcher: Matcher, target: Target, profiles: dict[str, CompanyProfile]) -> list[ConsortiumProposal]:
    ranked = matcher.rank(target, top_n=50)
    return propose_consortia(target, ranked, profiles, max_proposals=3)


def test_edf_proposals_satisfy_every_rule(matcher: Matcher, profiles: dict[str, CompanyProfile]) -> None:
    target = _edf_target()
    proposals = _propose(matcher, target, profiles)
    assert proposals
    for p in proposals:
        checks = check_rules(p, target, profiles)
        assert all(c.passed for c in checks), [c for c in checks if not c.passed]
        assert {c.rule for c in checks} >= {
            "min_countries",
            "independent_entities",
            "sme_participation",
            "needs_covered",
        }
        assert p.satisfied and 0.0 <= p.score <= 1.0
        assert 6 <= len(p.members) <= 20
        assert all(m.country not in {"US", "CH"} for m in p.members)
        assert sum(m.role == "coordinator" for m in p.members) == 1
        # Every need is answered by a named member, and the member says so.
        assert p.coverage and all(c.company_id for c in p.coverage)
        for c in p.coverage:
            member = next(m for m in p.members if m.company_id == c.company_id)
            assert c.need in member.covers
    assert [p.rank for p in proposals] == list(range(1, len(proposals) + 1))
    assert len({frozenset(m.company_id for m in p.members) for p in proposals}) == len(proposals)


def test_fsdb_proposal_led_by_posting_institute(matcher: Matcher, profiles: dict[str, CompanyProfile]) -> None:
    target = _fsdb_target()
    proposals = _propose(matcher, target, profiles)
    assert proposals
    for p in proposals:
        assert all(c.passed for c in check_rules(p, target, profiles))
        lead = p.coordinator
        assert lead is not None and lead.company_id == "be_institute"
        assert 2 <= len(p.members) <= 6
        assert {m.country for m in p.members} == {"BE"}
        covered = {c.need for c in p.coverage if c.company_id}
        assert covered == {"sonar signal processing", "autonomous underwater vehicles"}


def test_fsdb_with_unregistered_institute(matcher: Matcher, profiles: dict[str, CompanyProfile]) -> None:
    target = _fsdb_target("Royal Military Academy")
    proposals = _propose(matcher, target, profiles)
    assert proposals
    lead = proposals[0].coordinator
    assert lead is not None and lead.posting_institute and lead.company_name == "Royal Military Academy"
    assert all(c.passed for c in check_rules(proposals[0], target, profiles))


def test_diana_single_company(matcher: Matcher, profiles: dict[str, CompanyProfile]) -> None:
    target = _edf_target().model_copy(update={"programme": "DIANA", "edf_category": None, "domains": ["maritime"]})
    proposals = _propose(matcher, target, profiles)
    assert proposals
    assert all(len(p.members) == 1 and p.members[0].country != "CH" for p in proposals)
    assert all(all(c.passed for c in check_rules(p, target, profiles)) for p in proposals)


def _member(profile: CompanyProfile, role: str = "partner") -> ConsortiumMember:
    return ConsortiumMember(
        company_id=profile.id,
        company_name=profile.name,
        country=profile.country,
        role=role,
        organisation_type=profile.organisation_type,
        size=profile.size,
        parent_group=profile.parent_group,
    )


def _failed(p: ConsortiumProposal, target: Target, profiles: dict[str, CompanyProfile]) -> set[str]:
    return {c.rule for c in check_rules(p, target, profiles) if not c.passed}


def test_check_rules_catches_violations(profiles: dict[str, CompanyProfile]) -> None:
    edf = _edf_target()
    # Two French members of the same group: too few entities, countries and independent groups; no SME.
    small = ConsortiumProposal(
        rank=1,
        score=0.5,
        members=[_member(profiles["fr_radar"], "coordinator"), _member(profiles["fr_naval_sub"])],
    )
    assert _failed(small, edf, profiles) >= {
        "min_entities",
        "typical_size",
        "min_countries",
        "independent_entities",
        "sme_participation",
    }
    # A non-EU member is caught even if the proposal claims otherwise.
    members = [_member(profiles[c]) for c in ["be_sonar", "no_uuv", "es_sme", "it_naval", "pl_uuv"]]
    lying = _member(profiles["us_ai"]).model_copy(update={"country": "BE"})
    bad = ConsortiumProposal(rank=1, score=0.5, members=[_member(profiles["fr_radar"], "coordinator"), *members, lying])
    assert "eligible_countries" in _failed(bad, edf, profiles)
    # FSDB: a French partner and a lead that is not the posting institute.
    fsdb = _fsdb_target()
    wrong = ConsortiumProposal(
        rank=1, score=0.5, members=[_member(profiles["be_sonar"], "coordinator"), _member(profiles["fr_radar"])]
    )
    assert _failed(wrong, fsdb, profiles) >= {"eligible_countries", "posting_institute", "research_lead"}
    # An unknown member that is not the posting institute is rejected.
    ghost = ConsortiumMember(company_id="ghost", company_name="Ghost", country="BE", role="partner")
    assert "known_members" in _failed(wrong.model_copy(update={"members": [*wrong.members, ghost]}), fsdb, profiles)
    # Needs nobody covers.
    needy = fsdb.model_copy(update={"sought_capabilities": ["quantum gravimetry"]})
    ok = ConsortiumProposal(
        rank=1, score=0.5, members=[_member(profiles["be_institute"], "coordinator"), _member(profiles["be_sonar"])]
    )
    assert _failed(ok, needy, profiles) == {"needs_covered"}
    assert _failed(ok, fsdb, profiles) == set()
