"""Domain classification from the taxonomy: category mapping plus keyword hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.calls.domain.normalise import normalise_row
from services.calls.domain.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy


def test_taxonomy_loads_contract() -> None:
    tax = load_taxonomy()
    assert {"MCBRN", "C4ISR", "SENS", "DIS", "NT"} <= tax.category_codes
    assert len(tax.domains) == 9
    assert tax.category("c4isr") is not None


def test_category_mapping_alone_is_enough() -> None:
    tax = load_taxonomy()
    assert tax.classify(["Nothing relevant here"], "MCBRN") == ["biotechnology"]
    # Category maps to several domains: all kept, deterministic order.
    assert tax.classify([""], "C4ISR") == sorted(
        ["artificial-intelligence", "cybersecurity", "environment-geo-intelligence"]
    )


def test_single_keyword_is_not_meaningful() -> None:
    tax = load_taxonomy()
    assert tax.classify(["Support for the port of Antwerp"], None) == []
    assert tax.classify(["Port and harbour security"], None) == ["maritime"]


def test_keywords_need_whole_words() -> None:
    tax = load_taxonomy()
    # "ai" in "maintain", "sea" in "research", "space" in "airspace": none of these count.
    scores = {s.slug: s for s in tax.score_domains(["We maintain research on airspace"], None)}
    assert "artificial-intelligence" not in scores
    assert "maritime" not in scores
    assert "space" not in scores
    assert scores["aviation-counter-uas"].keywords == ("airspace",)


def test_longer_keyword_claims_its_words() -> None:
    tax = load_taxonomy()
    scores = {s.slug: s for s in tax.score_domains(["Counter-UAS and mine countermeasures"], None)}
    assert scores["aviation-counter-uas"].keywords == ("counter-uas",)  # not also "uas"
    assert scores["maritime"].keywords == ("mine countermeasures",)
    assert "biotechnology" not in scores  # "countermeasure" is part of the maritime phrase


def test_strength_orders_domains() -> None:
    tax = load_taxonomy()
    text = "Autonomous unmanned underwater robots with sonar for naval mine hunting at sea"
    domains = tax.classify([text], "NAVAL")
    assert domains == ["maritime", "autonomous-systems"]


def test_call_domains_use_title_description_and_keywords(make_row) -> None:  # type: ignore[no-untyped-def]
    row = make_row(
        "EDF-2026-RA-DIS-NT",
        title="Disruptive materials",
        description="<p>New <b>satellite</b> constellations</p>",
        keywords=("Earth observation",),
    )
    call = normalise_row(row)
    assert call.edf_category == "DIS"
    assert call.domains == ["space"]


def test_replay_data_domains(data_rows) -> None:  # type: ignore[no-untyped-def]
    calls = {c.id: c for c in (normalise_row(r) for r in data_rows)}
    assert calls["EDF-2026-DA-NAVAL-MCMS"].domains[:2] == ["maritime", "autonomous-systems"]
    assert calls["EDF-2026-RA-CYBER-AICD"].domains == ["cybersecurity", "artificial-intelligence"]
    assert calls["EDF-2026-RA-MCBRN-RDBT"].domains[0] == "biotechnology"
    assert calls["EDF-2026-DA-SPACE-SSAS"].domains[0] == "space"


def test_bad_taxonomy_is_rejected(tmp_path: Path) -> None:
    doc = {
        "domains": [{"slug": "a", "keywords": ["x"]}],
        "edf_categories": [{"code": "C", "domains": ["zz"]}],
    }
    with pytest.raises(TaxonomyError):
        parse_taxonomy(doc)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"domains": []}))
    with pytest.raises(TaxonomyError):
        load_taxonomy(path)
