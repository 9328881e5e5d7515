"""Property test over maximum sizes: any accepted write yields an event Kafka accepts (#9 §1).

Every string at its maximum length, made of the characters that cost most in the event's JSON
(4-byte UTF-8, characters JSON escapes). An accepted write's event must fit ``MAX_EVENT_BYTES``;
when a company is too large *in aggregate*, the refusal must name the field (the HTTP answer is a
413 with that field, tests/integration/test_input_limits.py).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.projects.models import Project, ProjectCreate
from services.registry.models import MAX_HISTORY_ITEMS, Company, CompanyCreate
from shared.events.base import envelope
from shared.events.companies import CompanyRegistered
from shared.events.projects import ProjectPosted
from shared.limits import (
    KAFKA_MAX_REQUEST_BYTES,
    KAFKA_MESSAGE_MAX_BYTES,
    MAX_EVENT_BYTES,
    EventTooLarge,
    check_event_size,
)

EXAMPLES = int(os.environ.get("EVENT_SIZE_EXAMPLES", "5"))
COSTLY = '𝔗é"\\\t'  # 4 bytes, 2 bytes, escaped quote, escaped backslash, escaped tab


def text(length: int, *, multiline: bool = False) -> st.SearchStrategy[str]:
    alphabet = COSTLY if multiline else COSTLY.replace("\t", "")
    # Strip-safe: no leading/trailing whitespace to be stripped below the maximum.
    return st.text(alphabet=alphabet, min_size=length, max_size=length).map(lambda s: "x" + s[1:-1] + "x")


def _event_size(ce_data: Any) -> int:
    ce = envelope(ce_data, source="registry", subject="x" * 36)
    return check_event_size(ce.type, ce.data, ce.model_dump_json())


def test_the_event_budget_leaves_a_margin_under_the_kafka_record_limits() -> None:
    overhead = 61 + 30 + 36 + 200  # batch header, record header, key, headers (traceparent, content type)
    assert MAX_EVENT_BYTES + overhead < min(KAFKA_MAX_REQUEST_BYTES, KAFKA_MESSAGE_MAX_BYTES)
    assert KAFKA_MAX_REQUEST_BYTES - MAX_EVENT_BYTES > 100_000


@st.composite
def max_company(draw: st.DrawFn, history_items: int) -> dict[str, Any]:
    item = {
        "programme": draw(text(200)),
        "year": 2024,
        "title": draw(text(200)),
        "summary": draw(text(2000, multiline=True)),
        "topic_id": draw(text(100)),
        "role": draw(text(50)),
        "partners": [draw(text(200))] * 100,
    }
    return {
        "name": draw(text(200)),
        "country": "BE",
        "city": draw(text(200)),
        "size": "large",
        "organisation_type": "company",
        "domains": [
            "maritime",
            "space",
            "cybersecurity",
            "energy",
            "biotechnology",
            "environment-geo-intelligence",
            "artificial-intelligence",
            "autonomous-systems",
            "aviation-counter-uas",
        ],
        "capabilities": [draw(text(500))] * 50,
        "keywords": [draw(text(60))] * 50,
        "website": "https://example.org/" + "a" * 400,
        "contact_email": "x@example.org",
        "parent_group": draw(text(200)),
        "pic": "123456789",
        "history": [item] * history_items,
    }


def _company_event(body: dict[str, Any]) -> CompanyRegistered:
    data = CompanyCreate.model_validate(body)
    company = Company(**data.model_dump(mode="json"))
    company.refresh_derived()
    return CompanyRegistered(company=company.public_profile())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=max_company(history_items=8))
def test_a_company_at_every_field_maximum_with_a_short_history_always_fits(body: dict[str, Any]) -> None:
    assert _event_size(_company_event(body)) <= MAX_EVENT_BYTES


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=max_company(history_items=MAX_HISTORY_ITEMS))
def test_a_company_too_large_in_aggregate_is_refused_naming_history(body: dict[str, Any]) -> None:
    with pytest.raises(EventTooLarge) as refused:
        _event_size(_company_event(body))
    assert refused.value.field == "history" and refused.value.limit == MAX_EVENT_BYTES


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    title=text(200),
    summary=text(10_000, multiline=True),
    institute=text(200),
    capability=text(500),
)
def test_a_project_at_every_field_maximum_always_fits(
    title: str, summary: str, institute: str, capability: str
) -> None:
    data = ProjectCreate.model_validate(
        {
            "title": title,
            "summary": summary,
            "programme": "FSDB",
            "institute": institute,
            "domains": ["maritime", "space", "cybersecurity", "energy", "biotechnology"],
            "sought_capabilities": [capability[:-2] + f"{i:02d}" for i in range(30)],
            "deadline": (date.today() + timedelta(days=30)).isoformat(),
            "partners_wanted": 50,
            "contact_email": "pi@example.org",
        }
    )
    project = Project(**data.model_dump(), status="open")
    assert _event_size(ProjectPosted(project=project.public_data())) <= MAX_EVENT_BYTES
