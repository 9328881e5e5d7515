"""Property test over maximum sizes: any accepted write yields an event Kafka accepts (#9 §1).

Every string at its maximum length, made of the characters that cost most in the event's JSON
(4-byte UTF-8, characters JSON escapes). An accepted write's event must fit ``MAX_EVENT_BYTES``;
when a company is too large *in aggregate*, the refusal must name the field (the HTTP answer is a
413 with that field, tests/integration/test_input_limits.py).
"""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.matching.domain import compute_ranking, project_target, publish_ranking
from services.matching.engine import CompanyChange, MatchingEngine
from services.matching.matcher import CompanyProfile
from services.matching.models import RankingInput, SuggestionSet
from services.matching.settings import MatchingSettings
from services.projects.models import Project, ProjectCreate
from services.registry.models import MAX_HISTORY_ITEMS, Company, CompanyCreate, CompanyUpdate
from shared.events.alerts import AlertRaised
from shared.events.base import envelope
from shared.events.companies import CompanyRegistered, CompanyRemoved, CompanyUpdated
from shared.events.projects import ProjectClosed, ProjectData, ProjectPosted
from shared.events.suggestions import MatchReasons, SuggestionItem, SuggestionsComputed
from shared.limits import (
    KAFKA_MAX_REQUEST_BYTES,
    KAFKA_MESSAGE_MAX_BYTES,
    MAX_EVENT_BYTES,
    TEXT_CAPS,
    EventTooLarge,
    check_event_size,
    fit_event,
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


# --------------------------------------------------------------------------- updates


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=max_company(history_items=8))
def test_a_company_update_at_every_field_maximum_always_fits(body: dict[str, Any]) -> None:
    company = _company_event(body).company
    changed = list(CompanyUpdate.model_fields)
    assert _event_size(CompanyUpdated(company=company, changed_fields=changed)) <= MAX_EVENT_BYTES


def test_events_that_carry_only_ids_cannot_grow() -> None:
    """DELETE /companies/{id}, POST /projects/{id}/close: ids of at most 36 characters (UUIDs)."""
    assert _event_size(CompanyRemoved(company_id="x" * 36)) < 2_000
    assert _event_size(ProjectClosed(project_id="x" * 36)) < 2_000


# --------------------------------------------------------------------------- derived: suggestions and consortia


def _words(seed: int) -> str:
    """Capability text the matcher finds similar (shared words), padded with costly characters to 500."""
    text = f"radar sonar lidar sensor fusion swarm detection {seed} "
    return text + COSTLY[:-1] * ((500 - len(text)) // 4)


def _matching_inputs(companies: int) -> tuple[MatchingEngine, ProjectData]:
    engine = MatchingEngine(top_n=MatchingSettings.model_fields["top_n"].metadata[-1].le)
    for i in range(companies):
        history = [
            {"programme": "EDF", "title": _words(i)[:200], "summary": _words(i) * 4, "topic_id": "EDF-2023-RA-SENS-X"}
        ] * 8
        profile = {
            "id": f"{i:036d}",
            "name": (COSTLY[:-1] * 60)[:200],
            "country": "BE",
            "domains": ["maritime", "cybersecurity"],
            "capabilities": [_words(i + j) for j in range(50)],
            "keywords": [_words(i)[:60]] * 50,
            "history": history,
        }
        engine._apply(CompanyChange(profile["id"], CompanyProfile.model_validate(profile)))
    project = ProjectData(
        id="p" * 36,
        title=_words(0)[:200],
        summary=_words(0) * 20,
        programme="FSDB",
        institute="Institute",
        domains=["maritime", "cybersecurity"],
        sought_capabilities=[_words(j) for j in range(30)],
        partners_wanted=50,
        status="open",
    )
    return engine, project


class _Session:
    def __init__(self) -> None:
        self.added: list[Any] = []

    async def get(self, *_: Any) -> None:
        return None

    def add(self, row: Any) -> None:
        self.added.append(row)


class _RecordingUnitOfWork:
    """Just what publish_ranking uses; ``emit`` checks the size exactly as UnitOfWork.emit does."""

    def __init__(self) -> None:
        self.session = _Session()
        self.sizes: dict[str, int] = {}

    def emit(self, data: Any, *, subject: str, event_id: str | None = None) -> None:
        self.sizes[type(data).__name__] = _event_size(data)


async def test_suggestions_and_consortia_over_companies_at_every_maximum_fit_with_the_ranking_whole() -> None:
    engine, project = _matching_inputs(companies=40)
    ranking = compute_ranking(engine, target=project_target(project))
    raw = SuggestionsComputed(
        target_type="project",
        target_id=project.id,
        target_title=project.title,
        programme=project.programme,
        algorithm_version=ranking.algorithm_version,
        computed_at=ranking.computed_at,
        suggestions=ranking.suggestions,
    )
    assert len(raw.model_dump_json().encode()) > MAX_EVENT_BYTES  # the inputs really are that large
    uow = _RecordingUnitOfWork()
    inputs = RankingInput(target_type="project", target_id=project.id, target_version=1, index_position={})
    assert await publish_ranking(uow, ranking, inputs=inputs, position=engine.position)  # type: ignore[arg-type]
    (stored,) = [row for row in uow.session.added if isinstance(row, SuggestionSet)]
    assert uow.sizes["SuggestionsComputed"] <= MAX_EVENT_BYTES
    assert uow.sizes["ConsortiumProposed"] <= MAX_EVENT_BYTES
    # Explanations were cut, the ranking was not: the same companies, ranks and scores.
    assert [(s["company_id"], s["rank"], s["score"]) for s in stored.suggestions] == [
        (s.company_id, s.rank, s.score) for s in ranking.suggestions
    ]
    assert [[m["company_id"] for m in p["members"]] for p in stored.consortia] == [
        [m.company_id for m in p.members] for p in ranking.proposals
    ]
    # The alerts service quotes one suggestion per alert (services/alerts/domain.py): each fits too.
    alerts = [
        AlertRaised(
            alert_id=str(uuid.uuid4()),
            company_id=s["company_id"],
            target_type="project",
            target_id=project.id,
            target_title=project.title,
            programme=project.programme,
            score=s["score"],
            rank=s["rank"],
            reasons=MatchReasons.model_validate(s["reasons"]),
            raised_at=ranking.computed_at,
        )
        for s in stored.suggestions
    ]
    assert alerts and max(_event_size(a) for a in alerts) <= MAX_EVENT_BYTES


def test_a_derived_event_is_cut_to_the_longest_texts_that_fit_and_ids_are_never_cut() -> None:
    item = SuggestionItem(
        company_id="c" * 36,
        company_name="n" * 200,
        country="BE",
        rank=1,
        score=0.5,
        reasons=MatchReasons(summary="s" * 600_000, top_terms=["t" * 400_000]),
    )
    fitted, cap = fit_event(item, keep=frozenset({"company_id", "company_name"}))
    assert cap == TEXT_CAPS[0]
    assert fitted.reasons.summary == "s" * (cap - 1) + "…" and fitted.company_name == "n" * 200
    assert fit_event(fitted, keep=frozenset()) == (fitted, None)  # fits: unchanged
