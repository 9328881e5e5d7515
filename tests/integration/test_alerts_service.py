"""The alerts service against the real broker and PostgreSQL: suggestions in, one alert per target out."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from services.alerts.bootstrap import build
from services.alerts.models import Alert
from services.alerts.settings import AlertsSettings
from shared.events.base import envelope
from shared.events.suggestions import CapabilityMatch, MatchReasons, SuggestionItem, SuggestionsComputed
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, wait_for
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

Service = tuple[httpx.AsyncClient, ServiceRuntime]


@pytest.fixture
async def service(databases: Databases, kafka_settings: KafkaSettings) -> AsyncIterator[Service]:
    settings = AlertsSettings(
        ALERTS_DATABASE_URL=databases.create("alerts"),  # type: ignore[call-arg]
        OUTBOX_POLL_INTERVAL=0.1,
        kafka=kafka_settings,
    )
    app, runtime = build(settings)
    async with runtime.lifespan():
        await wait_for(runtime.kafka_ready.is_set, timeout=30, what="alerts connected to Kafka")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://t", headers=admin_headers()
        ) as client:
            yield client, runtime


def company() -> str:
    return str(uuid.uuid4())


def item(company_id: str, *, rank: int, score: float, **reasons: Any) -> SuggestionItem:
    return SuggestionItem(
        company_id=company_id,
        company_name=f"Company {rank}",
        country="BE",
        rank=rank,
        score=score,
        reasons=MatchReasons(**reasons),
    )


def suggestions_event(
    target_id: str,
    items: list[SuggestionItem],
    *,
    title: str = "Counter-drone acoustic sensing",
    programme: str = "FSDB",
    domains: tuple[str, ...] = ("aviation-counter-uas",),
    target_type: str = "project",
    computed_at: datetime | None = None,
) -> bytes:
    data = SuggestionsComputed(
        target_type=target_type,  # type: ignore[arg-type]
        target_id=target_id,
        target_title=title,
        programme=programme,
        domains=list(domains),
        algorithm_version="hybrid-1",
        computed_at=computed_at or datetime.now(UTC),
        suggestions=items,
    )
    return envelope(data, source="matching", subject=target_id).model_dump_json().encode()


async def subscribe(client: httpx.AsyncClient, company_id: str, **body: Any) -> dict[str, Any]:
    response = await client.put(f"/subscriptions/{company_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def inbox(client: httpx.AsyncClient, company_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/companies/{company_id}/alerts", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def alert_count(runtime: ServiceRuntime) -> int:
    async with runtime.db.sessions() as s:
        return (await s.exec(select(func.count()).select_from(Alert))).one()


async def test_only_accepting_subscriptions_get_exactly_one_alert_per_target(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    client, runtime = service
    subscribed, unsubscribed, picky, edf_only, space_only, paused, drone_fan, quantum_fan = (
        company() for _ in range(8)
    )
    await subscribe(client, subscribed)
    await subscribe(client, picky, min_score=0.9)
    await subscribe(client, edf_only, programmes=["EDF"])
    await subscribe(client, space_only, domains=["space"])
    await subscribe(client, paused, active=False)
    await subscribe(client, drone_fan, keywords=["DRONE"], min_score=0.0)
    await subscribe(client, quantum_fan, keywords=["quantum"], min_score=0.0)

    target = str(uuid.uuid4())
    items = [
        item(subscribed, rank=1, score=0.8, matched_domains=["aviation-counter-uas"], top_terms=["acoustic"]),
        item(unsubscribed, rank=2, score=0.75),
        item(picky, rank=3, score=0.5),
        item(edf_only, rank=4, score=0.7),
        item(space_only, rank=5, score=0.7),
        item(paused, rank=6, score=0.7),
        item(drone_fan, rank=7, score=0.2),
        item(quantum_fan, rank=8, score=0.9),
    ]
    first = suggestions_event(target, items)
    await produce(kafka_settings, "suggestions.v1", [(target.encode(), first), (target.encode(), first)])
    processor = runtime.processors[0]
    await wait_for(lambda: processor.processed + processor.duplicates == 2, timeout=60, what="both deliveries")
    assert (processor.processed, processor.duplicates) == (1, 1)

    # A recomputation for the same target (a different event, new scores): nobody is alerted twice.
    again = [item(subscribed, rank=1, score=0.95), item(drone_fan, rank=2, score=0.9)]
    second = suggestions_event(target, again, computed_at=datetime.now(UTC) + timedelta(minutes=1))
    await produce(kafka_settings, "suggestions.v1", [(target.encode(), second)])
    await wait_for(lambda: processor.processed == 2, timeout=60, what="the recomputation handled")

    assert await alert_count(runtime) == 2
    page = await inbox(client, subscribed)
    assert page["total"] == 1
    alert = page["items"][0]
    assert alert["company_id"] == subscribed
    assert (alert["target_type"], alert["target_id"]) == ("project", target)
    assert alert["target_title"] == "Counter-drone acoustic sensing"
    assert (alert["programme"], alert["score"], alert["rank"]) == ("FSDB", 0.8, 1)  # the first computation's
    assert alert["reasons"]["top_terms"] == ["acoustic"]
    assert (await inbox(client, drone_fan))["total"] == 1  # "DRONE" matches "Counter-drone", any case
    for nobody in (unsubscribed, picky, edf_only, space_only, paused, quantum_fan):
        assert (await inbox(client, nobody))["total"] == 0, nobody

    records = await read_topic(kafka_settings, "alerts.v1", expect=3, timeout=8)
    assert sorted(r.key for r in records) == sorted([subscribed.encode(), drone_fan.encode()])
    raised = {r.key.decode(): json.loads(r.value) for r in records}
    event = raised[subscribed]
    assert event["type"] == "bondgenoot.alert.raised.v1"
    assert event["subject"] == subscribed
    assert event["data"]["alert_id"] == alert["id"]
    assert event["data"]["target_id"] == target
    assert (event["data"]["score"], event["data"]["rank"]) == (0.8, 1)


async def test_target_without_domains_is_judged_by_the_matched_domains_and_reasons(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    client, runtime = service
    cyber, space, by_reason = company(), company(), company()
    await subscribe(client, cyber, domains=["cybersecurity"], programmes=["EDF"])
    await subscribe(client, space, domains=["space"])
    await subscribe(client, by_reason, keywords=["post-quantum"])
    call_id = "EDF-2025-RA-CYBER-PQC"
    items = [
        item(cyber, rank=1, score=0.6, matched_domains=["cybersecurity"]),
        item(space, rank=2, score=0.6, matched_domains=["cybersecurity"]),
        item(
            by_reason,
            rank=3,
            score=0.5,
            capability_matches=[
                CapabilityMatch(sought="crypto agility", capability="Post-Quantum TLS stacks", similarity=0.7)
            ],
        ),
    ]
    event = suggestions_event(
        call_id, items, title="Resilient communications", programme="EDF", domains=(), target_type="call"
    )
    await produce(kafka_settings, "suggestions.v1", [(call_id.encode(), event)])
    processor = runtime.processors[0]
    await wait_for(lambda: processor.processed == 1, timeout=60, what="the event handled")

    got = (await inbox(client, cyber))["items"]
    assert [(a["target_type"], a["target_id"], a["programme"]) for a in got] == [("call", call_id, "EDF")]
    assert (await inbox(client, space))["total"] == 0
    assert (await inbox(client, by_reason))["total"] == 1
    records = await read_topic(kafka_settings, "alerts.v1", expect=2)
    assert sorted(r.key for r in records) == sorted([cyber.encode(), by_reason.encode()])


async def test_inbox_is_newest_first_and_paginated(service: Service, kafka_settings: KafkaSettings) -> None:
    client, runtime = service
    me = company()
    await subscribe(client, me)
    processor = runtime.processors[0]
    targets = [str(uuid.uuid4()) for _ in range(3)]
    for n, target in enumerate(targets, start=1):
        event = suggestions_event(target, [item(me, rank=n, score=0.5)], title=f"Project {n}")
        await produce(kafka_settings, "suggestions.v1", [(target.encode(), event)])
        await wait_for(lambda n=n: processor.processed == n, timeout=60, what=f"event {n} handled")

    page = await inbox(client, me)
    assert [a["target_title"] for a in page["items"]] == ["Project 3", "Project 2", "Project 1"]
    assert page["total"] == 3
    first = await inbox(client, me, limit=2)
    rest = await inbox(client, me, limit=2, offset=2)
    assert [a["target_id"] for a in first["items"] + rest["items"]] == list(reversed(targets))
    assert (first["total"], first["limit"], rest["offset"]) == (3, 2, 2)


async def test_subscriptions_are_validated_created_and_replaced(service: Service) -> None:
    client, _ = service
    me = company()
    assert (await client.get(f"/subscriptions/{me}")).status_code == 404

    created = await subscribe(client, me.upper(), programmes=["edf", "FSDB"], domains=["space"], keywords=["radar"])
    assert created["company_id"] == me
    assert (created["programmes"], created["domains"], created["keywords"]) == (
        ["EDF", "FSDB"],
        ["space"],
        ["radar"],
    )
    assert (created["min_score"], created["active"]) == (0.3, True)

    replaced = await subscribe(client, me, min_score=0.5)
    assert (replaced["programmes"], replaced["domains"], replaced["keywords"]) == ([], [], [])
    assert replaced["min_score"] == 0.5 and replaced["created_at"] == created["created_at"]
    assert (await client.get(f"/subscriptions/{me}")).json() == replaced

    invalid: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("not-a-uuid", {}, ["path", "company_id"]),
        (me, {"programmes": ["NOPE"]}, ["body", "programmes", 0]),
        (me, {"domains": ["knitting"]}, ["body", "domains", 0]),
        (me, {"min_score": 1.5}, ["body", "min_score"]),
        (me, {"keywords": [""]}, ["body", "keywords", 0]),
    ]
    for company_id, body, loc in invalid:
        response = await client.put(f"/subscriptions/{company_id}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert loc in [e["loc"] for e in response.json()["detail"]], response.text
    assert (await client.get(f"/subscriptions/{me}")).json() == replaced
    assert (await client.get("/subscriptions/not-a-uuid")).status_code == 422
    assert (await client.get("/companies/not-a-uuid/alerts")).status_code == 422
