"""The EDF benchmark harness on a tiny synthetic file; the real file only where it is present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.matching.__main__ import main
from bench.matching.data import load, others, profiles_from, resolve_path, target_for
from services.matching.matcher.taxonomy import load_taxonomy


def _participant(
    pic: str, country: str, role: str = "participant", sme: bool = False, kind: str = "PRC"
) -> dict[str, Any]:
    return {
        "organization_name": f"ORG {pic}",
        "pic": pic,
        "role": role,
        "type": kind,
        "sme": sme,
        "country_code": country,
    }


def _project(pid: str, title: str, objective: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {"project_id": pid, "acronym": pid, "title": title, "objective": objective, "participants": members}


def _dataset() -> dict[str, Any]:
    naval = [_participant("1", "FR", "coordinator"), _participant("2", "IT"), _participant("3", "BE", sme=True)]
    naval += [_participant("4", "NO"), _participant("5", "DE", kind="REC"), _participant("6", "ES", sme=True)]
    space = [_participant("7", "DE", "coordinator"), _participant("8", "NL"), _participant("9", "PL", sme=True)]
    return {
        "calls": {
            "EDF-2022-RA-UWW-A": {
                "title": "Underwater sonar",
                "description": "<p>Sonar arrays for anti-submarine warfare.</p>",
                "projects": [_project("P1", "Sonar arrays", "Sonar arrays for submarines", naval)],
            },
            "EDF-2022-RA-SPACE-B": {
                "title": "Satellite imagery",
                "description": "<p>Earth observation satellites.</p>",
                "projects": [_project("P2", "Satellite imagery", "Earth observation constellation", space)],
            },
            "EDF-2023-DA-UWW-C": {
                "title": "Sonar for mine countermeasures",
                "description": "<p>Sonar and <b>underwater</b> vehicles for mine countermeasures.</p>",
                "projects": [
                    _project("P3", "Mine hunting", "Sonar mine hunting", [naval[0], naval[1], naval[2], space[2]])
                ],
            },
        }
    }


def test_profiles_never_include_the_held_out_project(tmp_path: Path) -> None:
    path = tmp_path / "edf.json"
    path.write_text(json.dumps(_dataset()))
    data = load(path)
    tax = load_taxonomy()
    held = data.eval_projects("EDF-2023")[0]
    profiles = profiles_from(others(data.projects, held), data, tax)
    assert all(h.topic_id != held.topic_id for p in profiles.values() for h in p.history)
    assert "P3" not in " ".join(h.title for p in profiles.values() for h in p.history)
    assert profiles["1"].history[0].role == "coordinator" and profiles["3"].size == "small"
    assert profiles["5"].organisation_type == "research" and "maritime" in profiles["1"].domains
    target = target_for(held, data, tax)
    assert target.programme == "EDF" and target.edf_category == "UWW" and "<b>" not in target.description


def test_benchmark_cli_on_synthetic_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edf.json"
    path.write_text(json.dumps(_dataset()))
    assert main(["--data", str(path), "--eval", "EDF-2023", "--ablation"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["eval"] == "EDF-2023" and result["projects"] == 1
    for method in ("bm25", "matcher"):
        assert 0.0 <= result[method]["recall@20"] <= 1.0 and "mrr" in result[method]
    # The three history participants (1, 2, 3) plus 9 are all among the 8 candidates: recall@10 is 1.
    assert result["matcher"]["recall@10"] == pytest.approx(1.0)
    assert result["consortium"]["rules_satisfied_share"] in (1.0, None)
    assert any(line.startswith("| - text |") for line in out)


def test_benchmark_reports_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "absent.json"), "--eval", "EDF-2023"]) == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"] == "data not found"


def test_real_file_leakage_free() -> None:
    path = resolve_path(None)
    if not path.is_file():
        pytest.skip(f"real EDF data not present at {path} (set BONDGENOOT_EDF_DATA to run this test)")
    data = load(path)
    tax = load_taxonomy()
    held = data.eval_projects("EDF-2023")[0]
    profiles = profiles_from(others(data.projects, held), data, tax)
    titles = {h.title for p in profiles.values() for h in p.history}
    assert not any(held.title in t for t in titles if held.title)
    assert set(profiles) <= {p.pic for q in others(data.projects, held) for p in q.participants}
