"""Ranking behaviour: fit, eligibility filtering, explanations, scores, incremental updates."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from services.matching.matcher import CompanyProfile, Matcher, MatcherConfig, Target
from services.matching.matcher.index import SparseField
from tests.unit.matching.conftest import company, past


def _ids(matcher: Matcher, target: Target, n: int = 50) -> list[str]:
    return [s.company_id for s in matcher.rank(target, top_n=n)]


def test_fitting_company_ranks_above_unrelated(matcher: Matcher, sonar_target: Target) -> None:
    ranked = _ids(matcher, sonar_target)
    assert ranked.index("be_sonar") < ranked.index("be_cyber")
    assert ranked.index("no_uuv") < ranked.index("nl_space")
    assert ranked[0] in {"be_sonar", "no_uuv"}


def test_non_belgian_never_suggested_for_fsdb(matcher: Matcher, sonar_target: Target) -> None:
    target = sonar_target.model_copy(
        update={"programme": "FSDB", "target_type": "project", "institute": "be_institute"}
    )
    suggestions = matcher.rank(target, top_n=100)
    assert suggestions, "Belgian companies exist and must be suggested"
    assert {s.country for s in suggestions} == {"BE"}


def test_edf_excludes_non_eu(matcher: Matcher, sonar_target: Target) -> None:
    target = sonar_target.model_copy(update={"programme": "EDF"})
    ranked = _ids(matcher, target, 100)
    assert "us_ai" not in ranked and "ch_robot" not in ranked
    assert "no_uuv" in ranked and "gr_port" in ranked


def test_scores_in_unit_interval_and_sorted(matcher: Matcher, sonar_target: Target) -> None:
    suggestions = matcher.rank(sonar_target, top_n=100)
    assert [s.rank for s in suggestions] == list(range(1, len(suggestions) + 1))
    scores = [s.score for s in suggestions]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len(matcher.rank(sonar_target, top_n=3)) == 3


def test_reasons_name_domains_capabilities_and_terms(matcher: Matcher, sonar_target: Target) -> None:
    best = next(s for s in matcher.rank(sonar_target, top_n=20) if s.company_id == "be_sonar")
    reasons = best.reasons
    assert "maritime" in reasons.matched_domains
    pairs = {(m.sought, m.capability) for m in reasons.capability_matches}
    assert ("sonar signal processing", "underwater acoustic sonar signal processing") in pairs
    assert all(0.0 <= m.similarity <= 1.0 for m in reasons.capability_matches)
    assert "sonar" in reasons.top_terms
    assert set(reasons.signals) >= {"text", "network"}
    assert "OTHER" in reasons.eligibility and reasons.summary.startswith(best.company_name)


def test_every_contributing_signal_is_said_in_words(matcher: Matcher) -> None:
    """Category and network evidence name the earlier topics and the partners behind them."""
    target = Target(
        target_type="call",
        id="EDF-2025-DA-UWW-SYN",
        title="Underwater sonar and autonomous underwater vehicles for mine countermeasures",
        programme="EDF",
        description="Sonar signal processing, autonomous underwater vehicles, naval integration.",
    )
    ranked = matcher.rank(target, top_n=20)
    with_category = [s for s in ranked if s.reasons.signals.get("category", 0) > 0]
    with_network = [s for s in ranked if s.reasons.signals.get("network", 0) > 0]
    assert with_category and with_network
    for s in with_category:
        assert "earlier UWW topic" in s.reasons.summary and "EDF-2022-RA-UWW-UTS" in s.reasons.summary
    for s in with_network:
        assert "worked before with " in s.reasons.summary
    # Signals that do not contribute (weight 0) are neither scored nor shown.
    assert all({"experience", "domain", "coordinator"}.isdisjoint(s.reasons.signals) for s in ranked)


def test_upsert_changes_next_ranking(matcher: Matcher, sonar_target: Target) -> None:
    assert "newcomer" not in _ids(matcher, sonar_target, 100)
    newcomer = company(
        "newcomer",
        "BE",
        ["sonar signal processing for mine countermeasures", "autonomous underwater vehicles with sonar"],
        domains=["maritime", "autonomous-systems"],
        history=[past("Sonar demonstrator for mine countermeasures", "EDF-2022-RA-UWW-UTS", ["be_sonar"])],
    )
    matcher.upsert(newcomer)
    assert "newcomer" in _ids(matcher, sonar_target, 2)
    # Changing its profile to something unrelated moves it down in the very next ranking.
    matcher.upsert(newcomer.model_copy(update={"capabilities": ["bakery equipment"], "domains": []}))
    ranked = _ids(matcher, sonar_target)
    assert ranked.index("newcomer") > ranked.index("be_sonar")


def test_remove_drops_company(matcher: Matcher, sonar_target: Target) -> None:
    assert "be_sonar" in _ids(matcher, sonar_target)
    matcher.remove("be_sonar")
    assert "be_sonar" not in _ids(matcher, sonar_target, 100)
    assert "be_sonar" not in matcher
    matcher.remove("does-not-exist")  # no error


def test_network_signal_rewards_past_partners(profiles: dict[str, CompanyProfile], sonar_target: Target) -> None:
    m = Matcher(MatcherConfig(seeds=2))
    for p in profiles.values():
        m.upsert(p)
    _, _, signals, _ = m.scores(sonar_target)
    net = signals["network"]
    row = m.rows
    # fr_radar worked with be_sonar and no_uuv (the likely seeds); cyber never worked with anyone.
    assert net[row["fr_radar"]] > 0
    assert net[row["be_cyber"]] == 0


def _fresh(profiles: list[CompanyProfile]) -> Matcher:
    m = Matcher()
    for p in profiles:
        m.upsert(p)
    return m


def test_incremental_updates_equal_a_fresh_build(profiles: dict[str, CompanyProfile], sonar_target: Target) -> None:
    """Upserts, removals and compactions in any order give the scores of a fresh index."""
    rng = random.Random(7)
    m = Matcher()
    current: dict[str, CompanyProfile] = {}
    pool = list(profiles.values())
    for step in range(60):
        p = rng.choice(pool)
        if rng.random() < 0.25 and p.id in current:
            m.remove(p.id)
            del current[p.id]
        else:
            caps = rng.sample([*p.capabilities, "sonar", "radar", "drones"], k=2)
            changed = p.model_copy(update={"capabilities": caps})
            m.upsert(changed)
            current[p.id] = changed
        if step % 17 == 0:
            m.compact()
    fresh = _fresh(list(current.values()))
    # Length normalisation uses the average at the last compaction: compare compacted indexes.
    m.compact()
    fresh.compact()
    got = {s.company_id: s.score for s in m.rank(sonar_target, top_n=100)}
    want = {s.company_id: s.score for s in fresh.rank(sonar_target, top_n=100)}
    assert got.keys() == want.keys()
    for cid, score in want.items():
        assert got[cid] == pytest.approx(score, abs=1e-9)


def test_sparse_field_bm25_matches_formula() -> None:
    """Main segment and delta both score like the textbook formula (avg length from compaction)."""
    docs = {0: {"sonar": 2.0, "ship": 1.0}, 1: {"radar": 1.0}, 2: {"sonar": 1.0, "radar": 3.0, "drone": 1.0}}
    k1, b = 1.2, 0.75
    field = SparseField(bm25=(k1, b), compact_min_entries=10_000)
    for row, counts in docs.items():
        field.set_row(row, counts)
    field.compact()
    avg = sum(sum(c.values()) for c in docs.values()) / len(docs)
    field.set_row(3, {"sonar": 1.0})  # lands in the delta
    field.remove_row(1)  # tombstones a main-segment row
    live = {0: docs[0], 2: docs[2], 3: {"sonar": 1.0}}
    n = len(live)
    query = {"sonar": 1.0, "radar": 0.5}
    scores = field.bm25(query, 4)
    for row in range(4):
        expected = 0.0
        for term, weight in query.items():
            counts = live.get(row, {})
            if term in counts:
                df = sum(term in c for c in live.values())
                idf = math.log1p((n - df + 0.5) / (df + 0.5))
                tf = counts[term]
                length = sum(counts.values())
                expected += weight * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))
        assert scores[row] == pytest.approx(expected)
    assert scores[1] == 0.0
    assert sum(field.row_contributions(2, query).values()) == pytest.approx(scores[2])


def test_empty_matcher_and_no_eligible() -> None:
    target = Target(target_type="call", id="x", title="sonar", programme="FSDB")
    assert Matcher().rank(target) == []
    m = Matcher()
    m.upsert(CompanyProfile(id="fr", name="FR", country="FR", capabilities=["sonar"]))
    assert m.rank(target) == []
    assert np.isfinite(m.scores(target.model_copy(update={"programme": "OTHER"}))[0]).all()


def test_algorithm_version_names_signals() -> None:
    assert Matcher.ALGORITHM_VERSION.startswith("bondgenoot-matcher/")
    assert "text" in Matcher().ALGORITHM_VERSION


def test_posted_projects_weigh_declared_domains_calls_do_not() -> None:
    """Weights per kind of target: an institute's project keeps a domain weight, an EDF-fitted call has none."""
    m = Matcher()
    same = ["radar signal processing"]
    m.upsert(company("declares", "BE", same, domains=["aviation-counter-uas"]))
    m.upsert(company("silent", "BE", same, domains=[]))
    project = Target(
        target_type="project",
        id="P-1",
        title="Radar signal processing",
        programme="FSDB",
        institute="rma",
        domains=["aviation-counter-uas"],
    )
    ranked = m.rank(project, top_n=2)
    assert [s.company_id for s in ranked] == ["declares", "silent"]
    assert ranked[0].reasons.signals["domain"] == 1.0 and ranked[1].reasons.signals["domain"] == 0.0
    assert "aviation-counter-uas" in ranked[0].reasons.summary
    call = project.model_copy(update={"target_type": "call", "programme": "EDF", "institute": None})
    scored = m.rank(call, top_n=2)
    assert scored[0].score == scored[1].score and all("domain" not in s.reasons.signals for s in scored)
    # The override is configuration: taking the signal out takes it out for every kind of target.
    assert MatcherConfig().without("domain").weight("domain", "project") == 0.0
    assert MatcherConfig().weight("domain", "project") == 0.3 and MatcherConfig().weight("domain", "call") == 0.0
