"""Normalisation of portal rows: ids, dates, budget, HTML, merging."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from services.calls.domain.normalise import (
    TOPIC_URL,
    RowError,
    html_to_text,
    is_past_deadline,
    merge_rows,
    normalise_row,
    parse_portal_date,
    parse_topic_id,
)

RowFactory = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    ("identifier", "action", "category"),
    [
        ("EDF-2025-RA-MCBRN-ATE", "RA", "MCBRN"),
        ("EDF-2024-DA-C4ISR-DAA", "DA", "C4ISR"),
        ("EDF-2023-LS-RA-DIS-NT", "LS", "DIS"),
        ("EDF-2022-RA-SENS-GRID", "RA", "SENS"),
        ("EDF-2024-LS-RA-SMERO-NT", "LS", "SMERO"),
        ("EDF-2021-SPACE-D-SSAS", None, "SPACE"),
        ("EDF-2026-DA-NAVAL-MCMS", "DA", "NAVAL"),
        ("edf-2026-ra-cyber-aicd", "RA", "CYBER"),
        ("EDF-2025-FPA-XYZ-ABC", "FPA", None),
        ("EDF-2025", None, None),
    ],
)
def test_topic_id_parsing(identifier: str, action: str | None, category: str | None) -> None:
    parts = parse_topic_id(identifier)
    assert (parts.action_type, parts.category) == (action, category)
    assert parts.programme == "EDF"


def test_topic_id_year() -> None:
    assert parse_topic_id("EDF-2025-RA-MCBRN-ATE").year == 2025


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2027-04-08T00:00:00.000+0000", date(2027, 4, 8)),
        ("2027-04-08T23:00:00.000+0000", date(2027, 4, 8)),
        ("2027-04-08", date(2027, 4, 8)),
        ("16 October 2025", date(2025, 10, 16)),
        ("1 february 2026", date(2026, 2, 1)),
    ],
)
def test_portal_dates(raw: str, expected: date) -> None:
    assert parse_portal_date(raw) == expected


@pytest.mark.parametrize("raw", ["", "tomorrow", "2027-13-01", "31 Foo 2025", "30 February 2026"])
def test_bad_dates_raise(raw: str) -> None:
    with pytest.raises(RowError):
        parse_portal_date(raw)


def test_html_to_text() -> None:
    html = (
        "<div><p><strong>Expected&nbsp;Outcome:</strong></p>"
        "<p>Detect   threats &amp; protect\n  forces&#8212;fast.</p>"
        "<ul><li>first item</li><li>second <em>item</em></li></ul>"
        "<script>var x = 1;</script>line<br/>break &lt;tag&gt;</div>"
    )
    assert html_to_text(html) == (
        "Expected Outcome:\nDetect threats & protect forces\u2014fast.\nfirst item\nsecond item\nline\nbreak <tag>"
    )


def test_html_to_text_plain_and_empty() -> None:
    assert html_to_text("  just   text ") == "just text"
    assert html_to_text("") == ""


def test_normalise_row_fields(make_row: RowFactory) -> None:
    row = make_row(
        "EDF-2025-RA-MCBRN-ATE",
        status="31094501",
        title="  Advanced   threat  evaluation ",
        deadlines=("2027-09-23T00:00:00.000+0000", "2027-03-11T00:00:00.000+0000"),
        keywords=("CBRN", "cbrn", "Vaccines"),
        tags=["pathogen"],
    )
    call = normalise_row(row)
    assert call.id == "EDF-2025-RA-MCBRN-ATE"
    assert call.programme == "EDF"
    assert call.title == "Advanced threat evaluation"
    assert call.status == "forthcoming"
    assert call.opening_date == date(2026, 6, 17)
    assert call.deadlines == [date(2027, 3, 11), date(2027, 9, 23)]
    assert call.action_type == "RA"
    assert call.edf_category == "MCBRN"
    assert call.call_identifier == "EDF-2025-RA"
    assert call.ccm2_id == "90000001"
    assert call.url == TOPIC_URL.format(id="EDF-2025-RA-MCBRN-ATE")
    assert call.url.endswith("/topic-details/EDF-2025-RA-MCBRN-ATE")
    assert call.keywords == ["CBRN", "pathogen", "Vaccines"]
    assert call.budget_eur is None
    assert "biotechnology" in call.domains


@pytest.mark.parametrize(
    ("code", "status"), [("31094501", "forthcoming"), ("31094502", "open"), ("31094503", "closed")]
)
def test_status_mapping(make_row: RowFactory, code: str, status: str) -> None:
    assert normalise_row(make_row(status=code)).status == status


def _overview(ccm2_own: str, ccm2_sibling: str) -> dict[str, Any]:
    return {
        "budgetTopicActionMap": {
            ccm2_own: [
                {
                    "action": "EDF-2025-RA-MCBRN-ATE - EDF Research Actions",
                    "plannedOpeningDate": "2025-02-13",
                    "deadlineModel": "single-stage",
                    "deadlineDates": ["2025-10-16"],
                    "budgetYearMap": {"2025": 40000000, "2026": "5000000"},
                }
            ],
            ccm2_sibling: [
                {
                    "action": "EDF-2025-RA-CYBER-XYZ - EDF Research Actions",
                    "budgetYearMap": {"2025": 99000000},
                }
            ],
        },
        "budgetYearsColumns": ["2025", "2026"],
    }


def test_budget_sums_own_actions_by_ccm2(make_row: RowFactory) -> None:
    row = make_row("EDF-2025-RA-MCBRN-ATE", ccm2="111", budget=_overview("111", "222"))
    assert normalise_row(row).budget_eur == 45_000_000


def test_budget_falls_back_to_action_label(make_row: RowFactory) -> None:
    # The row's ccm2Id is not a key of the map: find the topic by its action label instead.
    row = make_row("EDF-2025-RA-MCBRN-ATE", ccm2="333", budget=_overview("111", "222"))
    assert normalise_row(row).budget_eur == 45_000_000


def test_budget_none_when_topic_not_in_overview(make_row: RowFactory) -> None:
    row = make_row("EDF-2025-RA-MCBRN-OTHER", ccm2="333", budget=_overview("111", "222"))
    assert normalise_row(row).budget_eur is None


def test_dates_fall_back_to_actions(make_row: RowFactory) -> None:
    actions = [
        {
            "status": {"id": 31094502, "abbreviation": "Open", "description": "Open"},
            "types": [{"typeOfAction": "EDF Research Actions", "typeOfMGAs": []}],
            "plannedOpeningDate": "13 February 2025",
            "deadlineModel": "two-stage",
            "deadlineDates": ["16 October 2025", "5 March 2026"],
        }
    ]
    row = make_row(status="", deadlines=(), start=None, actions=actions)
    call = normalise_row(row)
    assert call.status == "open"
    assert call.opening_date == date(2025, 2, 13)
    assert call.deadlines == [date(2025, 10, 16), date(2026, 3, 5)]


@pytest.mark.parametrize(
    "change",
    [
        {"identifier": []},
        {"title": []},
        {"status": ["12345"]},
        {"deadlineDate": ["soon"]},
        {"budgetOverview": ["{not json"]},
        {"actions": ['{"a": 1}']},
        {"keywords": [{"nested": "object"}]},
    ],
)
def test_bad_rows_raise(make_row: RowFactory, change: dict[str, Any]) -> None:
    row = make_row()
    row["metadata"].update(change)
    with pytest.raises(RowError):
        normalise_row(row)


def test_row_without_metadata_raises() -> None:
    with pytest.raises(RowError):
        normalise_row({"reference": "x"})


def test_merge_duplicate_rows(make_row: RowFactory) -> None:
    early = make_row(
        "EDF-2026-LS-RA-DIS-NT",
        status="31094501",
        description="<p>Short.</p>",
        deadlines=("2027-04-08T00:00:00.000+0000",),
        keywords=("Disruptive",),
        callTitle=[],
    )
    full = make_row(
        "EDF-2026-LS-RA-DIS-NT",
        status="31094502",
        description="<p>A much longer description of the topic.</p>",
        deadlines=("2027-04-08T00:00:00.000+0000", "2027-10-01T00:00:00.000+0000"),
        keywords=("Emerging",),
        budget={"budgetTopicActionMap": {"90000001": [{"action": "x", "budgetYearMap": {"2027": 32000000}}]}},
    )
    other = make_row("EDF-2026-RA-CYBER-AICD")
    merged = merge_rows([early, other, full])
    assert [c.id for c in merged] == ["EDF-2026-LS-RA-DIS-NT", "EDF-2026-RA-CYBER-AICD"]
    dis = merged[0]
    assert dis.status == "open"  # the most advanced status wins
    assert dis.deadlines == [date(2027, 4, 8), date(2027, 10, 1)]
    assert dis.description == "A much longer description of the topic."
    assert dis.call_title == "A test call"
    assert dis.budget_eur == 32_000_000
    assert dis.keywords == ["Disruptive", "Emerging"]
    # Order of rows must not matter.
    assert merge_rows([full, other, early]) == merged


def test_merge_of_replay_data(data_rows: list[dict[str, Any]]) -> None:
    merged = merge_rows(data_rows)
    assert len(data_rows) == 7
    assert len(merged) == 6
    dis = next(c for c in merged if c.id == "EDF-2026-LS-RA-DIS-NT")
    assert dis.budget_eur == 32_000_000
    assert dis.call_title is not None
    assert "neuromorphic computing" in dis.description
    space = next(c for c in merged if c.id == "EDF-2026-DA-SPACE-SSAS")
    assert space.deadlines == [date(2027, 3, 11), date(2027, 10, 7)]
    naval = next(c for c in merged if c.id == "EDF-2026-DA-NAVAL-MCMS")
    assert naval.budget_eur == 45_000_000  # 2026 + 2027, siblings in the same call not counted


def test_is_past_deadline(make_row: RowFactory) -> None:
    two_stage = normalise_row(make_row(deadlines=("2027-03-11T00:00:00.000+0000", "2027-10-07T00:00:00.000+0000")))
    assert not is_past_deadline(two_stage, date(2027, 3, 12))  # second stage still ahead
    assert not is_past_deadline(two_stage, date(2027, 10, 7))  # deadline day itself is still open
    assert is_past_deadline(two_stage, date(2027, 10, 8))
    no_deadline = normalise_row(make_row(deadlines=()))
    assert not is_past_deadline(no_deadline, date(2100, 1, 1))
