"""The bounds beside the EDF benchmark: the oracle's quota logic and the CLI on a tiny synthetic file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.matching.limits import country_quota, main, popularity_rank
from services.matching.matcher import CompanyProfile, ProjectHistory


def test_country_quota_shares_places_by_the_real_mix() -> None:
    ranked = ["fr1", "fr2", "fr3", "it1", "it2", "de1", "de2"]
    country = {c: c[:2].upper() for c in ranked}
    truth = frozenset({"it2", "de2", "de9"})  # de9 has no history: it does not count in the mix
    picked = country_quota(ranked, truth, country, k=4)
    # Half Italian, half German among the known participants: 2 + 2 places, each in ranked order.
    assert sorted(picked) == ["de1", "de2", "it1", "it2"] and picked.index("it1") < picked.index("it2")


def test_country_quota_splits_exactly_k_places_whatever_the_set_order() -> None:
    ranked = [f"{nation}{i}" for i in range(5) for nation in ("fr", "it", "es")]
    country = {c: c[:2].upper() for c in ranked}
    # Three countries, one participant each: 4 places cannot split evenly; the remainder goes by code.
    truth = frozenset({"fr4", "it4", "es4"})
    picked = country_quota(ranked, truth, country, k=4)
    assert len(picked) == 4 and Counter(country[c] for c in picked) == {"ES": 2, "FR": 1, "IT": 1}
    assert country_quota(list(ranked), frozenset(sorted(truth, reverse=True)), country, k=4) == picked


def test_country_quota_fills_leftover_places_in_ranked_order() -> None:
    ranked = ["fr1", "it1", "it2", "fr2"]
    country = {c: c[:2].upper() for c in ranked}
    # The mix is all Italian but only two Italians are candidates: the other places go to the best.
    assert country_quota(ranked, frozenset({"it1", "it2"}), country, k=4) == ["it1", "it2", "fr1", "fr2"]
    # No participant has a history: there is no mix to follow, the ranking stands.
    assert country_quota(ranked, frozenset({"xx"}), country, k=3) == ["fr1", "it1", "it2"]


def test_popularity_ranks_by_number_of_projects_then_id() -> None:
    def org(cid: str, projects: int) -> CompanyProfile:
        history = [ProjectHistory(programme="EDF", year=2022, title=f"p{i}") for i in range(projects)]
        return CompanyProfile(id=cid, name=cid, country="BE", history=history)

    profiles = {"b": org("b", 2), "a": org("a", 2), "c": org("c", 5), "d": org("d", 0)}
    assert popularity_rank(sorted(profiles), profiles) == ["c", "a", "b", "d"]


@pytest.mark.parametrize("protocol", ["temporal", "loo"])
def test_limits_cli_on_synthetic_file(synthetic_edf: Path, capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    assert main(["--data", str(synthetic_edf), "--eval", "EDF-2023", "--protocol", protocol]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["eval"] == "EDF-2023" and result["projects"] == 1 and result["protocol"] == protocol
    # P3's 4 participants all took part in P1 or P2 (2022): a perfect ranking finds every one,
    # the coordinator first.
    assert result["ceiling_recall@20"] == pytest.approx(1.0)
    assert result["ceiling_coordinator@20"] == pytest.approx(1.0)
    measured = [v for k, v in result.items() if k.endswith("recall@20") and not k.startswith("ceiling")]
    assert measured and all(0.0 <= v <= result["ceiling_recall@20"] for v in measured)


def test_limits_coordinator_section(synthetic_edf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(synthetic_edf), "--eval", "EDF-2023", "--coordinators"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    # P3 (a thematic UWW topic) is led by organisation 1, which led P1 in 2022.
    assert set(result["coordinator_by_subject"]) == {"thematic"}
    assert result["coordinator_by_subject"]["thematic"]["projects"] == 1
    assert result["coordinators"] == result["coordinators_with_history"] == 1
    assert result["coordinators_with_1_or_2_earlier_projects"] == 1
    assert result["coordinator_bound_thematic_perfect"] == pytest.approx(1.0)
    (row,) = result["coordinator_rows"]
    assert row["coordinator"] == "ORG 1" and row["earlier_projects"] == 1 and row["earlier_coordinations"] == 1
    assert any(line.startswith("| EDF-2023-DA-UWW-C | thematic | ORG 1 | 1 | 1 |") for line in lines)
