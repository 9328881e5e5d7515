"""Cheap rescoring (``Matcher.rescore_check`` / ``would_change``) agrees with a full ranking."""

from __future__ import annotations

import random

from bench.matching.generator import CATEGORIES, TECH, _statement, targets
from services.matching.matcher import CompanyProfile, Matcher, ProjectHistory, Target
from tests.unit.matching.conftest import company


def _published(matcher: Matcher, target: Target, top_n: int) -> list[tuple[str, float]]:
    return [(s.company_id, s.score) for s in matcher.rank(target, top_n=top_n)]


def _position(ranked: list[tuple[str, float]], company_id: str) -> tuple[int, float] | None:
    """What the service compares: (rank, score to 4 decimals)."""
    return next(((i + 1, round(s, 4)) for i, (c, s) in enumerate(ranked) if c == company_id), None)


def test_unchanged_outside_top_n_is_cheap(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    assert "be_cyber" not in dict(current)
    changed = company("be_cyber", "BE", ["network intrusion detection", "security operations centre"])
    matcher.upsert(changed)
    check = matcher.rescore_check(sonar_target, "be_cyber", current, top_n=5)
    assert check.path == "cheap", check.reason
    assert not check.changed and check.position is None
    assert _position(_published(matcher, sonar_target, 5), "be_cyber") is None
    assert not matcher.would_change(sonar_target, "be_cyber", current, top_n=5)


def test_company_enters_top_n(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    assert "es_sme" not in dict(current)
    better = company(
        "es_sme", "ES", ["sonar transducers and hydrophones", "sonar signal processing"], domains=["maritime"]
    )
    matcher.upsert(better)
    check = matcher.rescore_check(sonar_target, "es_sme", current, top_n=5)
    ranked = _published(matcher, sonar_target, 5)
    assert check.changed and _position(ranked, "es_sme") is not None
    assert check.position == _position(ranked, "es_sme")[0]  # type: ignore[index]
    assert check.score is not None and abs(check.score - dict(ranked)["es_sme"]) < 1e-6


def test_company_leaves_top_n(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    leaving = current[-1][0]
    matcher.upsert(company(leaving, "ES", ["catering services", "office furniture"]))
    check = matcher.rescore_check(sonar_target, leaving, current, top_n=5)
    assert check.changed and check.position is None
    assert _position(_published(matcher, sonar_target, 5), leaving) is None


def test_removed_company_leaves(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    gone = current[2][0]
    matcher.remove(gone)
    check = matcher.rescore_check(sonar_target, gone, current, top_n=5)
    assert check.changed and check.position is None and check.score is None
    assert not matcher.would_change(sonar_target, "never-registered", current, top_n=5)


def test_new_maximum_falls_back_to_full_scoring(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    star = company(
        "fi_star",
        "FI",
        [*sonar_target.sought_capabilities * 3, "underwater sonar for mine countermeasures"],
        domains=["maritime"],
    )
    matcher.upsert(star)
    check = matcher.rescore_check(sonar_target, "fi_star", current, top_n=5)
    assert check.path == "full" and check.reason == "new text maximum" and check.changed
    ranked = _published(matcher, sonar_target, 5)
    assert check.position == _position(ranked, "fi_star")[0]  # type: ignore[index]
    assert ranked[0][1] < current[0][1]  # everybody's text signal was rescaled by the new maximum


def test_edited_target_and_compaction_get_a_fresh_state(matcher: Matcher, sonar_target: Target) -> None:
    current = _published(matcher, sonar_target, 5)
    edited = sonar_target.model_copy(update={"description": sonar_target.description + " Harbour protection."})
    matcher.upsert(company("be_cyber", "BE", ["firewalls"]))
    assert matcher.rescore_check(edited, "be_cyber", current, top_n=5).path == "full"
    assert matcher.rescore_check(edited, "be_cyber", current, top_n=5).path == "cheap"
    matcher.compact()  # moves the BM25 length normaliser
    assert matcher.rescore_check(edited, "be_cyber", current, top_n=5).path == "full"


def _random_company(rng: random.Random, i: int, n: int) -> CompanyProfile:
    domains = rng.sample(list(TECH), k=rng.choice([1, 2]))
    history = [
        ProjectHistory(
            programme="EDF",
            year=2022,
            title=_statement(rng, d),
            summary=_statement(rng, d),
            topic_id=f"EDF-2022-RA-{CATEGORIES[d]}-X1",
            role=rng.choice(["coordinator", "participant", "participant"]),
            partners=[str(1000 + rng.randrange(n)) for _ in range(rng.randint(1, 5))],  # PICs: a real graph
        )
        for d in (rng.choice(domains) for _ in range(rng.choice([0, 1, 2, 3])))
    ]
    return CompanyProfile(
        id=f"C{i}",
        name=f"Org {i}",
        pic=str(1000 + i),
        country=rng.choice(["BE", "FR", "DE", "US", "NO", "IT"]),
        domains=domains,
        capabilities=[_statement(rng, rng.choice(domains)) for _ in range(rng.randint(1, 4))],
        history=history,
    )


def test_random_changes_agree_with_full_rank() -> None:
    """Over random upserts/removals the cheap check never misses a change the full ranking shows."""
    rng = random.Random(11)
    n, top_n = 200, 10
    matcher = Matcher()
    for i in range(n):
        matcher.upsert(_random_company(rng, i, n))
    matcher.compact()
    queries = targets(6)
    current = {t.id: _published(matcher, t, top_n) for t in queries}
    missed = spurious = cheap = total = 0
    for _ in range(60):
        cid = f"C{rng.randrange(n)}"
        if rng.random() < 0.1:
            matcher.remove(cid)
        else:
            matcher.upsert(_random_company(rng, int(cid[1:]), n))
        for target in queries:
            check = matcher.rescore_check(target, cid, current[target.id], top_n=top_n)
            ranked = _published(matcher, target, top_n)
            truth = _position(ranked, cid) != _position(current[target.id], cid)
            missed += truth and not check.changed
            spurious += check.changed and not truth
            cheap += check.path == "cheap"
            total += 1
            if truth:
                current[target.id] = ranked  # the service republishes
    assert missed == 0
    assert spurious <= total // 100  # only near-ties within the documented idf drift
    assert cheap >= 0.8 * total


def test_a_target_without_second_stage_seeds_can_still_be_rescored(sonar_target: Target) -> None:
    # One registered company that matches nothing of the target: its stored state has no seeds.
    matcher = Matcher()
    matcher.upsert(company("be_naval", "BE", ["naval platform integration"], domains=["maritime"]))
    current = [(s.company_id, s.score) for s in matcher.rank(sonar_target)]
    matcher.upsert(company("be_sonar", "BE", ["underwater acoustic sonar signal processing"], domains=["maritime"]))
    check = matcher.rescore_check(sonar_target, "be_sonar", current)
    assert check.changed == ("be_sonar" in [s.company_id for s in matcher.rank(sonar_target)])
