"""Small synthetic registry for the matcher tests (no real data: the EDF file stays outside the repo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.matching.matcher import CompanyProfile, Matcher, ProjectHistory, Target
from shared.taxonomy_index import TaxonomyIndex, load_index


def company(
    cid: str,
    country: str,
    capabilities: list[str],
    *,
    domains: list[str] | None = None,
    org: str = "company",
    size: str = "small",
    group: str | None = None,
    history: list[ProjectHistory] | None = None,
    keywords: list[str] | None = None,
) -> CompanyProfile:
    return CompanyProfile(
        id=cid,
        name=cid.replace("_", " ").title(),
        country=country,
        city="",
        organisation_type=org,  # type: ignore[arg-type]
        size=size,  # type: ignore[arg-type]
        domains=domains or [],
        capabilities=capabilities,
        keywords=keywords or [],
        parent_group=group,
        history=history or [],
    )


def past(title: str, topic: str, partners: list[str], role: str = "participant") -> ProjectHistory:
    return ProjectHistory(
        programme="EDF", year=2022, title=title, summary=title, topic_id=topic, role=role, partners=partners
    )


@pytest.fixture(scope="session")
def taxonomy() -> TaxonomyIndex:
    return load_index()


@pytest.fixture
def profiles() -> dict[str, CompanyProfile]:
    uww = "EDF-2022-RA-UWW-UTS"
    items = [
        company(
            "be_sonar",
            "BE",
            ["underwater acoustic sonar signal processing", "mine countermeasures with autonomous underwater vehicles"],
            domains=["maritime"],
            history=[past("Sonar arrays for harbour protection", uww, ["fr_radar", "no_uuv"])],
        ),
        company(
            "be_cyber",
            "BE",
            ["network intrusion detection", "cryptography and secure communication"],
            domains=["cybersecurity"],
        ),
        company(
            "be_institute",
            "BE",
            ["defence research on sonar, radar and autonomous systems"],
            domains=["maritime", "autonomous-systems"],
            org="research",
            size="large",
        ),
        company(
            "fr_radar",
            "FR",
            ["radar signal processing", "naval surveillance sensors"],
            domains=["maritime", "environment-geo-intelligence"],
            size="large",
            group="navalcorp",
            history=[past("Sonar arrays for harbour protection", uww, ["be_sonar", "no_uuv"], role="coordinator")],
        ),
        company(
            "fr_naval_sub",
            "FR",
            ["ship hull design", "naval platform integration"],
            domains=["maritime"],
            size="large",
            group="navalcorp",
        ),
        company(
            "de_drone", "DE", ["counter-uas drone detection", "interceptor drones"], domains=["aviation-counter-uas"]
        ),
        company(
            "nl_space", "NL", ["satellite earth observation imagery"], domains=["space"], org="research", size="large"
        ),
        company(
            "us_ai", "US", ["machine learning computer vision for sonar data"], domains=["artificial-intelligence"]
        ),
        company("ch_robot", "CH", ["underwater robotics and sonar"], domains=["maritime", "autonomous-systems"]),
        company(
            "no_uuv",
            "NO",
            ["autonomous underwater vehicles uuv navigation", "subsea sonar mapping"],
            domains=["maritime", "autonomous-systems"],
            size="medium",
            history=[past("Sonar arrays for harbour protection", uww, ["be_sonar", "fr_radar"])],
        ),
        company("es_sme", "ES", ["sonar transducers and hydrophones"], domains=["maritime"], size="micro"),
        company(
            "it_naval", "IT", ["naval combat systems", "sonar integration on ships"], domains=["maritime"], size="large"
        ),
        company("gr_port", "EL", ["port security and harbour surveillance"], domains=["maritime"], size="small"),
        company(
            "pl_uuv",
            "PL",
            ["unmanned underwater vehicle autonomy"],
            domains=["maritime", "autonomous-systems"],
            size="medium",
        ),
    ]
    return {p.id: p for p in items}


@pytest.fixture
def matcher(profiles: dict[str, CompanyProfile]) -> Matcher:
    m = Matcher()
    for p in profiles.values():
        m.upsert(p)
    return m


@pytest.fixture
def sonar_target() -> Target:
    return Target(
        target_type="call",
        id="OTHER-SONAR-1",
        title="Underwater sonar for mine countermeasures",
        programme="OTHER",
        description="Develop sonar signal processing and autonomous underwater vehicles for mine countermeasures.",
        sought_capabilities=["sonar signal processing", "autonomous underwater vehicles"],
        domains=["maritime"],
    )


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


@pytest.fixture
def synthetic_edf(tmp_path: Path) -> Path:
    """A three-project file in the shape of edf_calls.json (P3, EDF-2023, is the one to predict)."""
    path = tmp_path / "edf.json"
    path.write_text(json.dumps(_dataset()))
    return path
