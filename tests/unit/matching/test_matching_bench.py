"""The EDF benchmark harness on a tiny synthetic file; the real file only where it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.matching.__main__ import main
from bench.matching.data import load, others, profiles_from, resolve_path, target_for
from bench.matching.run import METRICS, Harness
from services.matching.matcher import MatcherConfig
from shared.taxonomy_index import load_index


def test_profiles_never_include_the_held_out_project(synthetic_edf: Path) -> None:
    data = load(synthetic_edf)
    tax = load_index()
    held = data.eval_projects("EDF-2023")[0]
    profiles = profiles_from(others(data.projects, held), data, tax)
    assert all(h.topic_id != held.topic_id for p in profiles.values() for h in p.history)
    assert "P3" not in " ".join(h.title for p in profiles.values() for h in p.history)
    assert profiles["1"].history[0].role == "coordinator" and profiles["3"].size == "small"
    assert profiles["5"].organisation_type == "research" and "maritime" in profiles["1"].domains
    target = target_for(held, data, tax)
    assert target.programme == "EDF" and target.edf_category == "UWW" and "<b>" not in target.description


def test_benchmark_cli_on_synthetic_file(synthetic_edf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(synthetic_edf), "--eval", "EDF-2023", "--ablation"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result) == {
        "eval",
        "protocol",
        "projects",
        "bm25",
        "matcher",
        "diff_recall@20_ci95",
        "ratio_recall@20",
        "consortium",
    }
    assert result["eval"] == "EDF-2023" and result["protocol"] == "temporal" and result["projects"] == 1
    for method in ("bm25", "matcher"):
        assert set(result[method]) == set(METRICS)
        assert 0.0 <= result[method]["recall@20"] <= 1.0
    # History = the two 2022 projects; P3's four participants all took part in them: found, coordinator too.
    assert result["matcher"]["recall@10"] == pytest.approx(1.0)
    assert result["matcher"]["coordinator@20"] == pytest.approx(1.0)
    assert result["matcher"]["ceiling"] == pytest.approx(1.0)
    low, high = result["diff_recall@20_ci95"]
    assert low <= high
    assert result["consortium"]["rules_satisfied_share"] in (1.0, None)
    assert "bm25_greedy_topk_recall" in result["consortium"]
    assert any(line.startswith("| description | 1 | matcher |") for line in out)
    assert any(line.startswith("| - text |") for line in out)


def test_temporal_protocol_profiles_only_earlier_years(synthetic_edf: Path) -> None:
    data = load(synthetic_edf)
    harness = Harness(data, load_index(), protocol="temporal")
    profiles = harness.history("EDF-2023")
    assert {h.topic_id[:8] for p in profiles.values() for h in p.history} == {"EDF-2022"}
    # Nothing is known before 2022: no candidates at all for a 2022 call.
    assert harness.history("EDF-2022") == {}
    loo = Harness(data, load_index(), protocol="loo")
    matcher = loo.build(MatcherConfig(), "EDF-2023")
    cases = list(loo.cases("EDF-2023", {"m": matcher}))
    assert len(cases) == 1 and all(
        h.topic_id != "EDF-2023-DA-UWW-C" for p in cases[0].profiles.values() for h in p.history
    )


def test_benchmark_reports_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "absent.json"), "--eval", "EDF-2023"]) == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"] == "data not found"


def test_real_file_leakage_free() -> None:
    path = resolve_path(None)
    if not path.is_file():
        pytest.skip(f"real EDF data not present at {path} (set BONDGENOOT_EDF_DATA to run this test)")
    data = load(path)
    tax = load_index()
    held = data.eval_projects("EDF-2023")[0]
    profiles = profiles_from(others(data.projects, held), data, tax)
    titles = {h.title for p in profiles.values() for h in p.history}
    assert not any(held.title in t for t in titles if held.title)
    assert set(profiles) <= {p.pic for q in others(data.projects, held) for p in q.participants}
