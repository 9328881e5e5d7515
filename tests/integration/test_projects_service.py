"""The projects service against the real broker and PostgreSQL: HTTP in, events out, suggestions in."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from services.projects.bootstrap import build
from services.projects.models import Project
from services.projects.settings import ProjectsSettings
from shared.events.base import CloudEvent, envelope
from shared.events.suggestions import (
    ConsortiumMember,
    ConsortiumProposal,
    ConsortiumProposed,
    MatchReasons,
    RuleCheck,
    SuggestionItem,
    SuggestionsComputed,
)
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, wait_for
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

Service = tuple[httpx.AsyncClient, ServiceRuntime]


@pytest.fixture
async def service(databases: Databases, kafka_settings: KafkaSettings) -> AsyncIterator[Service]:
    settings = ProjectsSettings(
        PROJECTS_DATABASE_URL=databases.create("projects"),  # type: ignore[call-arg]
        OUTBOX_POLL_INTERVAL=0.1,
        kafka=kafka_settings,
    )
    app, runtime = build(settings)
    async with runtime.lifespan():
        await wait_for(runtime.kafka_ready.is_set, timeout=30, what="projects connected to Kafka")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://t", headers=admin_headers()
        ) as client:
            yield client, runtime


def project_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Acoustic detection of small drones",
        "summary": "Passive acoustic arrays to detect and classify small UAS in urban areas.",
        "programme": "FSDB",
        "institute": "KU Leuven ESAT",
        "domains": ["aviation-counter-uas", "artificial-intelligence"],
        "sought_capabilities": ["MEMS microphone arrays", "edge inference for audio classification"],
        "deadline": (date.today() + timedelta(days=60)).isoformat(),
        "partners_wanted": 3,
        "contact_email": "pi@kuleuven.example",
    }
    body.update(overrides)
    return body


def _events(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


async def _count(runtime: ServiceRuntime, model: type[Project] | type[OutboxRecord]) -> int:
    async with runtime.db.sessions() as s:
        return (await s.exec(select(func.count()).select_from(model))).one()


async def test_post_returns_201_and_publishes_project_posted_without_contact_email(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    client, _ = service
    response = await client.post("/projects", json=project_body())
    assert response.status_code == 201, response.text
    project = response.json()
    assert project["status"] == "open"
    assert project["contact_email"] == "pi@kuleuven.example"
    assert project["partners_wanted"] == 3

    assert (await client.get(f"/projects/{project['id']}")).json() == project
    assert (await client.get("/projects/nope")).status_code == 404

    records = await read_topic(kafka_settings, "projects.v1", expect=1)
    assert len(records) == 1
    assert records[0].key == project["id"].encode()
    ce = CloudEvent.model_validate_json(records[0].value)
    assert ce.type == "bondgenoot.project.posted.v1"
    assert ce.subject == project["id"]
    assert ce.source == "/services/projects"
    assert ce.data["project"]["id"] == project["id"]
    assert ce.data["project"]["title"] == "Acoustic detection of small drones"
    assert ce.data["project"]["status"] == "open"
    assert "contact_email" not in ce.data["project"]
    assert b"contact_email" not in records[0].value and b"pi@kuleuven.example" not in records[0].value


async def test_invalid_input_is_422_naming_the_field_and_nothing_is_written(service: Service) -> None:
    client, runtime = service
    cases: list[tuple[dict[str, Any], str]] = [
        (project_body(domains=["underwater-basket-weaving"]), "domains"),
        (project_body(programme="HORIZON-XYZ"), "programme"),
        (project_body(sought_capabilities=[]), "sought_capabilities"),
        (project_body(title="x" * 10_000), "title"),
        (project_body(deadline=(date.today() - timedelta(days=1)).isoformat()), "deadline"),
        (project_body(partners_wanted=51), "partners_wanted"),
        (project_body(contact_email="not-an-email"), "contact_email"),
        ({k: v for k, v in project_body().items() if k != "summary"}, "summary"),
    ]
    for body, field in cases:
        response = await client.post("/projects", json=body)
        assert response.status_code == 422, (field, response.text)
        locs = [e["loc"] for e in response.json()["detail"]]
        assert any(loc[:2] == ["body", field] for loc in locs), (field, locs)
    assert await _count(runtime, Project) == 0
    assert await _count(runtime, OutboxRecord) == 0


async def test_patch_emits_changed_fields_and_close_twice_emits_once(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    client, runtime = service
    project = (await client.post("/projects", json=project_body())).json()
    pid = project["id"]

    response = await client.patch(f"/projects/{pid}", json={"title": "Acoustic C-UAS", "partners_wanted": 3})
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Acoustic C-UAS"
    # Nothing really changes, or only the private contact address: no event.
    assert (await client.patch(f"/projects/{pid}", json={"title": "Acoustic C-UAS"})).status_code == 200
    response = await client.patch(f"/projects/{pid}", json={"contact_email": "office@kuleuven.example"})
    assert response.json()["contact_email"] == "office@kuleuven.example"
    # Field-level validation on PATCH too; an explicit null for a required field is refused.
    response = await client.patch(f"/projects/{pid}", json={"domains": ["nope"], "title": None})
    assert response.status_code == 422
    assert {tuple(e["loc"][:2]) for e in response.json()["detail"]} == {
        ("body", "domains"),
        ("body", "title"),
    }
    assert (await client.patch("/projects/unknown", json={"title": "x"})).status_code == 404

    first = await client.post(f"/projects/{pid}/close")
    second = await client.post(f"/projects/{pid}/close")
    assert first.status_code == second.status_code == 200
    assert second.json()["status"] == "closed" and second.json()["closed_at"] == first.json()["closed_at"]
    assert (await client.patch(f"/projects/{pid}", json={"title": "Too late"})).status_code == 409
    assert (await client.post("/projects/unknown/close")).status_code == 404

    other = (await client.post("/projects", json=project_body(title="Maritime autonomy"))).json()
    open_page = (await client.get("/projects", params={"status": "open"})).json()
    assert [p["id"] for p in open_page["items"]] == [other["id"]] and open_page["total"] == 1
    closed_page = (await client.get("/projects", params={"status": "closed"})).json()
    assert [p["id"] for p in closed_page["items"]] == [pid]
    everything = (await client.get("/projects", params={"limit": 1})).json()
    assert everything["total"] == 2 and everything["limit"] == 1 and len(everything["items"]) == 1
    assert (await client.get("/projects", params={"status": "pending"})).status_code == 422

    records = await read_topic(kafka_settings, "projects.v1", expect=5, timeout=8)
    mine = [e for e in _events(records) if e["subject"] == pid]
    assert [e["type"] for e in mine] == [
        "bondgenoot.project.posted.v1",
        "bondgenoot.project.updated.v1",
        "bondgenoot.project.closed.v1",
    ]
    assert mine[1]["data"]["changed_fields"] == ["title"]
    assert mine[1]["data"]["project"]["title"] == "Acoustic C-UAS"
    assert mine[2]["data"] == {"project_id": pid}
    assert len(records) == 4  # the other project's posted event; nothing more
    assert await _count(runtime, OutboxRecord) == 4


def _suggestions(project_id: str, *, computed_at: datetime, score: float, target_type: str = "project") -> bytes:
    data = SuggestionsComputed(
        target_type=target_type,  # type: ignore[arg-type]
        target_id=project_id,
        target_title="Acoustic detection of small drones",
        programme="FSDB",
        domains=["aviation-counter-uas"],
        algorithm_version="hybrid-1",
        computed_at=computed_at,
        suggestions=[
            SuggestionItem(
                company_id="5f0c2a1e-0000-4000-8000-000000000001",
                company_name="Sonar Systems NV",
                country="BE",
                rank=1,
                score=score,
                reasons=MatchReasons(matched_domains=["aviation-counter-uas"], summary="acoustic arrays"),
            )
        ],
    )
    return envelope(data, source="matching", subject=project_id).model_dump_json().encode()


def _consortium(project_id: str, *, computed_at: datetime) -> bytes:
    data = ConsortiumProposed(
        target_type="project",
        target_id=project_id,
        target_title="Acoustic detection of small drones",
        programme="FSDB",
        algorithm_version="consortium-1",
        computed_at=computed_at,
        proposals=[
            ConsortiumProposal(
                rank=1,
                score=0.7,
                members=[
                    ConsortiumMember(
                        company_id="5f0c2a1e-0000-4000-8000-000000000001",
                        company_name="Sonar Systems NV",
                        country="BE",
                        role="coordinator",
                        covers=["MEMS microphone arrays"],
                    )
                ],
                rules=[RuleCheck(rule="min-partners", passed=True, detail="1 >= 1")],
            )
        ],
    )
    return envelope(data, source="matching", subject=project_id).model_dump_json().encode()


async def test_suggestions_and_consortia_from_the_stream_are_served_latest_first(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    client, runtime = service
    pid = (await client.post("/projects", json=project_body())).json()["id"]
    empty = (await client.get(f"/projects/{pid}/suggestions")).json()
    assert empty == {"project_id": pid, "algorithm_version": None, "computed_at": None, "suggestions": []}
    assert (await client.get(f"/projects/{pid}/consortia")).json()["proposals"] == []
    assert (await client.get("/projects/unknown/suggestions")).status_code == 404
    assert (await client.get("/projects/unknown/consortia")).status_code == 404

    now = datetime.now(UTC)
    key = pid.encode()
    await produce(
        kafka_settings,
        "suggestions.v1",
        [
            (key, _suggestions(pid, computed_at=now, score=0.8)),
            (key, _suggestions(pid, computed_at=now - timedelta(hours=1), score=0.1)),  # older: ignored
            (key, _consortium(pid, computed_at=now)),
            (key, _suggestions(pid, computed_at=now + timedelta(hours=1), score=0.5, target_type="call")),
            (b"elsewhere", _suggestions("0000-unknown", computed_at=now, score=0.9)),
        ],
    )
    processor = runtime.processors[0]
    await wait_for(lambda: processor.processed == 5, timeout=60, what="all suggestion events handled")

    async def latest() -> dict[str, Any]:
        return dict((await client.get(f"/projects/{pid}/suggestions")).json())

    got = await wait_for(latest, what="suggestions served")
    assert got["algorithm_version"] == "hybrid-1"
    assert datetime.fromisoformat(got["computed_at"]) == now
    assert [(s["company_name"], s["score"]) for s in got["suggestions"]] == [("Sonar Systems NV", 0.8)]
    assert got["suggestions"][0]["reasons"]["matched_domains"] == ["aviation-counter-uas"]

    consortia = (await client.get(f"/projects/{pid}/consortia")).json()
    assert consortia["algorithm_version"] == "consortium-1"
    assert [m["role"] for m in consortia["proposals"][0]["members"]] == ["coordinator"]

    # A newer recomputation replaces the stored suggestions.
    await produce(
        kafka_settings,
        "suggestions.v1",
        [(key, _suggestions(pid, computed_at=now + timedelta(minutes=5), score=0.6))],
    )

    async def replaced() -> bool:
        return [s["score"] for s in (await latest())["suggestions"]] == [0.6]

    await wait_for(replaced, timeout=60, what="newer suggestions stored")


async def test_projects_can_be_listed_per_institute(service: Service) -> None:
    """GET /projects?institute= (the portal's "your projects") lists that institute's projects only."""
    client, _runtime = service
    tag = uuid.uuid4().hex[:6]
    mine = [(await client.post("/projects", json=project_body(institute=f"Lab {tag}"))).json()["id"] for _ in range(2)]
    await client.post("/projects", json=project_body(institute=f"Other {tag}"))
    listed = (await client.get("/projects", params={"institute": f"Lab {tag}"})).json()
    assert sorted(p["id"] for p in listed["items"]) == sorted(mine) and listed["total"] == 2
