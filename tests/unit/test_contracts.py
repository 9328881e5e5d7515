"""The checked-in contracts match the pydantic models, and every example validates."""

from __future__ import annotations

import json

import jsonschema

from shared import contracts
from shared.events import EVENT_TYPES, TOPICS
from shared.events.base import envelope
from shared.events.projects import ProjectClosed
from shared.taxonomy import load_taxonomy


def test_contracts_are_up_to_date() -> None:
    stale = contracts.stale(contracts.render())
    assert stale == [], f"run `make contracts`: {stale}"


def test_every_event_type_has_a_schema_and_an_asyncapi_message() -> None:
    doc = json.loads((contracts.CONTRACTS / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["components"]["messages"]) == set(EVENT_TYPES)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {*TOPICS, *(t + ".dlq" for t in TOPICS)}


def test_an_envelope_validates_against_its_schema_and_a_broken_one_does_not() -> None:
    schema = json.loads((contracts.CONTRACTS / "schemas" / f"{ProjectClosed.event_type}.json").read_text())
    good = json.loads(envelope(ProjectClosed(project_id="p1"), source="projects", subject="p1").model_dump_json())
    jsonschema.Draft202012Validator(schema).validate(good)
    bad = {**good, "data": {}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


def test_taxonomy_maps_every_edf_category_to_known_domains() -> None:
    tax = load_taxonomy()
    assert len(tax.domain_slugs) == 9
    for category in tax.raw["edf_categories"]:
        assert set(category["domains"]) <= tax.domain_slugs, category["code"]
