"""Parsing the two portal formats: topicProjectsList.json rows and search-api project documents."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from services.registry.importer.formats import (
    FormatError,
    ProjectSummary,
    funded_project,
    normalise_role,
    parse_amount,
    parse_date,
    parse_participants,
    parse_project_document,
    parse_topic_projects,
)
from tests.unit.registry.conftest import raw_document, raw_participant


def test_topic_projects_is_a_json_array_of_rows() -> None:
    body = json.dumps(
        [
            {"programId": 44181033, "businessIdentifier": "101167826", "acronym": "CARMENTA PF", "title": " A  title "},
            {"programId": "44181033", "businessIdentifier": 101103721, "acronym": "X", "title": "Y", "extra": {"a": 1}},
        ]
    ).encode()
    rows = parse_topic_projects(body)
    assert rows == [
        ProjectSummary(programme_id="44181033", project_id="101167826", acronym="CARMENTA PF", title="A title"),
        ProjectSummary(programme_id="44181033", project_id="101103721", acronym="X", title="Y"),
    ]


def test_topic_projects_tolerates_a_wrapping_object_and_other_spellings() -> None:
    rows = parse_topic_projects({"projects": [{"projectId": "190000001", "title": "T"}]})
    assert rows == [ProjectSummary(programme_id=None, project_id="190000001", title="T")]


def test_topic_without_projects_is_an_empty_array() -> None:
    assert parse_topic_projects(b"[]") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>Service unavailable</html>", "not JSON"),
        (b'{"error": "x"}', "expected a JSON array"),
        (b'[{"title": "no id"}]', "row 0"),
        (b'[{"businessIdentifier": "../etc"}]', "row 0"),
    ],
)
def test_bad_topic_projects_raise_format_error(body: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_topic_projects(body)


def test_document_metadata_arrays_and_participants_json_string() -> None:
    participants = json.dumps(
        [
            raw_participant("999954862", "THALES-LIKE SAS", role="participant", order=2),
            raw_participant(911716484, "ELETTRO-LIKE SPA", role="coordinator", order=1, sme="true"),
            raw_participant("", "NO PIC LAB", role="thirdParty", order=3),
        ]
    )
    document = parse_project_document(json.dumps(raw_document([participants])).encode())
    assert document.status == "Ongoing"
    assert document.start_date == date(2024, 12, 1)
    assert document.end_date == date(2027, 11, 30)
    assert document.overall_budget == Decimal("5560880.31")
    assert document.eu_contribution == Decimal("3299977.25")
    assert document.objective == "Builds a thing."
    assert document.type_of_action == "EDF Development Actions"
    # Ordered by the portal's `order`; the numeric PIC became a string; the empty PIC counts as none.
    assert [(p.pic, p.name, p.role, p.order) for p in document.participants] == [
        ("911716484", "ELETTRO-LIKE SPA", "coordinator", 1),
        ("999954862", "THALES-LIKE SAS", "participant", 2),
        (None, "NO PIC LAB", "third_party", 3),
    ]
    first = document.participants[0]
    assert first.sme is True
    assert (first.country_code, first.country, first.city) == ("BE", "Belgium", "Gent")
    assert first.eu_contribution == Decimal("1000.00")
    assert first.type == "PRC" and first.activity_type == "Private for profit organisation"


def test_participants_spread_over_several_json_strings() -> None:
    values = [
        json.dumps([raw_participant("100000001", "A", order=1), raw_participant("100000002", "B", order=2)]),
        json.dumps(raw_participant("100000003", "C", order=3)),  # one object, not an array
        "",
        json.dumps([raw_participant("100000004", "D", order=4)]),
    ]
    assert [p.name for p in parse_participants(values)] == ["A", "B", "C", "D"]


def test_participants_as_a_bare_string_or_absent() -> None:
    assert [p.pic for p in parse_participants(json.dumps([raw_participant("100000001", "A")]))] == ["100000001"]
    assert parse_participants(None) == []
    assert parse_project_document(raw_document(participants=[])).participants == []
    document = raw_document()
    del document["metadata"]["participants"]
    assert parse_project_document(document).participants == []


def test_country_code_as_plain_string_and_odd_values() -> None:
    (p,) = parse_participants(
        [
            json.dumps(
                [
                    raw_participant(
                        "12345",  # not nine digits: cannot match anyone
                        "  SPACED   NAME  ",
                        role="associatedPartner",
                        order="x",
                        sme="N",
                        postalAddress={"countryCode": "nl", "city": "Delft"},
                        eucontribution="€ 1,234.50",
                    )
                ]
            )
        ]
    )
    assert p.pic is None
    assert p.name == "SPACED NAME"
    assert p.role == "associated_partner"
    assert p.order is None
    assert p.sme is False
    assert (p.country_code, p.city) == ("NL", "Delft")
    assert p.eu_contribution == Decimal("1234.50")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["[{'pic': '999954862'}]"], "participants\\[0\\]: not a JSON string"),
        (["42"], "expected a JSON array or object"),
        ([json.dumps(["not an object"])], "participant 0"),
    ],
)
def test_broken_participants_raise_format_error(values: list[str], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_participants(values)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"nope", "not JSON"), (b"[]", "expected a JSON object"), (b'{"reference": "x"}', "missing 'metadata'")],
)
def test_bad_documents_raise_format_error(body: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_project_document(body)


def test_document_tolerates_missing_fields_and_bare_values() -> None:
    document = parse_project_document(
        {"metadata": {"objective": "Plain value", "startDate": [], "overallBudget": ["n/a"]}}
    )
    assert document.objective == "Plain value"
    assert document.start_date is None
    assert document.overall_budget is None


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        ("coordinator", "coordinator"),
        ("COORDINATOR", "coordinator"),
        ("participant", "participant"),
        ("beneficiary", "participant"),
        ("thirdParty", "third_party"),
        ("associatedPartner", "associated_partner"),
        ("international partner", "international_partner"),
        ("", None),
        (None, None),
    ],
)
def test_roles_are_normalised(raw: str | None, role: str | None) -> None:
    assert normalise_role(raw) == role


def test_dates_and_amounts() -> None:
    assert parse_date("2024-12-01T00:00:00.000+0100") == date(2024, 12, 1)
    assert parse_date("2024-02-30") is None
    assert parse_date("01/12/2024") is None
    assert parse_amount(55560880) == Decimal(55560880)
    assert parse_amount("") is None
    assert parse_amount("NaN") is None
    assert parse_amount(True) is None


def test_funded_project_joins_row_and_document() -> None:
    summary = ProjectSummary(programme_id="44181033", project_id="199000101", acronym="QN", title="")
    document = parse_project_document(raw_document(title=["Document title"]))
    project = funded_project(
        summary, document, ccm2_id="90002201", topic_id="EDF-2022-RA-SENS-QPNT", programme_id="44181033"
    )
    assert project.programme == "EDF"
    assert project.title == "Document title"  # the row had none
    assert project.topic_id == "EDF-2022-RA-SENS-QPNT"
    assert project.start_date == date(2024, 12, 1)
