"""The call watcher against the real broker and PostgreSQL, polling the in-process SEDIA replay server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import func
from sqlmodel import select

from services.calls import use_cases
from services.calls.bootstrap import build
from services.calls.domain.portal import PortalConfig
from services.calls.replay.server import DEFAULT_DATA, ReplayServer, load_rows, run_replay_server
from services.calls.settings import CallsSettings
from shared.events.base import CloudEvent, envelope, parse_data
from shared.events.calls import CallClosed, CallPublished, CallUpdated
from shared.events.suggestions import MatchReasons, SuggestionItem, SuggestionsComputed
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, wait_for
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "schemas"
PAGE_SIZE = 3
MAX_ATTEMPTS = 3
_DATE = re.compile(r"\b(20\d\d)-(\d\d)-(\d\d)")
_LONG_DATE = re.compile(r"\b(\d{1,2} [A-Z][a-z]+ )(20\d\d)\b")


def _future_rows() -> list[dict[str, Any]]:
    """The replay data with every date moved forward by whole years, so no deadline has passed yet."""
    shift = max(0, datetime.now(UTC).year - 2025)

    def iso(m: re.Match[str]) -> str:
        year, month, day = int(m[1]) + shift, int(m[2]), int(m[3])
        day = min(day, 28) if month == 2 else day  # 29 February does not exist in every year
        return f"{year:04d}-{month:02d}-{day:02d}"

    text = json.dumps(load_rows(DEFAULT_DATA))
    text = _DATE.sub(iso, text)
    text = _LONG_DATE.sub(lambda m: f"{m[1]}{int(m[2]) + shift}", text)
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


ROWS = _future_rows()
TOPIC_IDS = sorted({r["metadata"]["identifier"][0] for r in ROWS})
N = len(TOPIC_IDS)


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with run_replay_server(ROWS) as srv:
        yield srv


@asynccontextmanager
async def calls_service(
    databases: Databases, kafka: KafkaSettings, srv: ReplayServer, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    """The service with its lifespan running (ASGITransport does not run it) and Kafka connected."""
    options: dict[str, Any] = {
        "database_url": databases.create("calls"),
        "kafka": kafka,
        "CALLS_FT_SEARCH_URL": srv.endpoint,
        "poll_on_start": False,
        "portal_page_size": PAGE_SIZE,
        "portal_max_attempts": MAX_ATTEMPTS,
        "portal_backoff_base_s": 0.01,
        "portal_backoff_max_s": 0.05,
        "portal_timeout_s": 5.0,
        "outbox_poll_interval_s": 0.1,
    }
    settings = CallsSettings(**{**options, **overrides})
    app, runtime = build(settings)
    async with runtime.lifespan():
        await wait_for(runtime.kafka_ready.is_set, timeout=30, what="calls service connected to Kafka")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://calls", headers=admin_headers()) as client:
            yield client, runtime


async def _poll(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/calls/poll")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == set(use_cases.PollCounts.model_fields)
    return body


async def _records(kafka: KafkaSettings, expect: int, wait_s: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_topic(kafka, "calls.v1", expect=expect, timeout=wait_s)


def _event(record: ConsumerRecord[bytes, bytes]) -> CloudEvent:
    """Decode a calls.v1 record, checking the envelope, the key and the event's JSON Schema."""
    assert record.value is not None
    raw = json.loads(record.value)
    ce = CloudEvent.model_validate(raw)
    schema = json.loads((SCHEMAS / f"{ce.type}.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(raw)
    parse_data(ce)
    assert ce.source == "/services/calls"
    assert record.key == ce.subject.encode()
    assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")
    return ce


async def _outbox_rows(runtime: ServiceRuntime) -> int:
    async with runtime.db.sessions() as session:
        return (await session.exec(select(func.count()).select_from(OutboxRecord))).one()


def _suggestions(target_id: str, *, computed_at: datetime, version: str, target_type: str = "call") -> bytes:
    data = SuggestionsComputed(
        target_type=target_type,  # type: ignore[arg-type]
        target_id=target_id,
        target_title="A topic",
        programme="EDF",
        domains=["cybersecurity"],
        algorithm_version=version,
        computed_at=computed_at,
        suggestions=[
            SuggestionItem(
                company_id="c-1",
                company_name="Cyber NV",
                country="BE",
                rank=1,
                score=0.82,
                reasons=MatchReasons(matched_domains=["cybersecurity"], summary=f"by {version}"),
            )
        ],
    )
    return envelope(data, source="matching", subject=target_id).model_dump_json().encode()


async def test_first_poll_publishes_every_topic_and_the_same_data_again_publishes_nothing(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, runtime):
        first = await _poll(client)
        assert first == {
            "new": N,
            "updated": 0,
            "unchanged": 0,
            "closed": 0,
            "complete": True,
            "unparseable_rows": 0,
            "restarts": 0,
            "problems": [],
        }
        records = await _records(kafka_settings, expect=N)
        events = [_event(r) for r in records]
        assert len(events) == N
        assert {e.type for e in events} == {CallPublished.event_type}
        assert sorted(e.subject for e in events) == TOPIC_IDS
        assert all(e.data["call"]["id"] == e.subject for e in events)

        listing = (await client.get("/calls")).json()
        assert listing["total"] == N
        keys = [(max(c["deadlines"]), c["id"]) for c in listing["items"]]
        # Latest deadline first, ties by id.
        assert keys == sorted(keys, key=lambda k: (-date.fromisoformat(k[0]).toordinal(), k[1]))
        one = (await client.get(f"/calls/{TOPIC_IDS[0]}")).json()
        assert one["id"] == TOPIC_IDS[0] and one["status"] in {"open", "forthcoming"}
        assert one["first_seen_at"].endswith(("Z", "+00:00")) and one["closed_at"] is None
        assert (await client.get("/calls/EDF-1999-NOPE")).status_code == 404
        edf_open = (await client.get("/calls", params={"programme": "EDF", "status": "open"})).json()
        assert edf_open["total"] == sum(c["status"] == "open" for c in listing["items"])
        assert (await client.get("/calls", params={"programme": "H2020"})).json()["total"] == 0

        second = await _poll(client)
        assert second == {
            "new": 0,
            "updated": 0,
            "unchanged": N,
            "closed": 0,
            "complete": True,
            "unparseable_rows": 0,
            "restarts": 0,
            "problems": [],
        }
        assert await _outbox_rows(runtime) == N
        assert len(await _records(kafka_settings, expect=N + 1, wait_s=3)) == N


async def test_changed_deadline_is_published_as_call_updated(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        target = "EDF-2026-RA-CYBER-AICD"
        new_deadline = date.fromisoformat((await client.get(f"/calls/{target}")).json()["deadlines"][-1]) + timedelta(
            days=30
        )
        rows = json.loads(json.dumps(ROWS))
        (row,) = [r for r in rows if r["metadata"]["identifier"] == [target]]
        row["metadata"]["deadlineDate"] = [f"{new_deadline.isoformat()}T00:00:00.000+0000"]
        replay.state.set_rows(rows)

        counts = await _poll(client)
        assert counts == {
            "new": 0,
            "updated": 1,
            "unchanged": N - 1,
            "closed": 0,
            "complete": True,
            "unparseable_rows": 0,
            "restarts": 0,
            "problems": [],
        }
        records = await _records(kafka_settings, expect=N + 1)
        assert len(records) == N + 1
        updates = [e for e in map(_event, records) if e.type == CallUpdated.event_type]
        assert len(updates) == 1
        assert updates[0].subject == target
        assert "deadlines" in updates[0].data["changed_fields"]
        assert updates[0].data["call"]["deadlines"] == [new_deadline.isoformat()]
        assert (await client.get(f"/calls/{target}")).json()["deadlines"] == [new_deadline.isoformat()]
        assert (await _poll(client))["unchanged"] == N


async def test_portal_failing_repeatedly_answers_503_and_keeps_the_stored_calls(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, runtime):
        await _poll(client)
        replay.state.fail_next(MAX_ATTEMPTS, status=500)
        failed = await client.post("/calls/poll")
        assert failed.status_code == 503
        assert "unavailable" in failed.json()["detail"] and "HTTP 500" in failed.json()["detail"]
        assert failed.headers["retry-after"]

        listing = (await client.get("/calls")).json()
        assert listing["total"] == N
        assert all(c["status"] != "closed" for c in listing["items"])
        assert await _outbox_rows(runtime) == N

        again = await _poll(client)
        assert again["unchanged"] == N and again["complete"] is True
        assert len(await _records(kafka_settings, expect=N + 1, wait_s=3)) == N


async def test_malformed_page_closes_nothing_and_a_complete_poll_closes_what_vanished(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        replay.state.malform_page(2, "not-json")
        partial = await _poll(client)
        assert partial["complete"] is False
        assert any("page 2" in p for p in partial["problems"])
        # The replay sorts rows by identifier; page 2 holds rows 4-6. A topic with a row on page 1 or 3
        # is still seen (perhaps only partly: then its change is held back, so nothing is lost).
        ordered = sorted(ROWS, key=lambda r: r["metadata"]["identifier"][0])
        seen = {r["metadata"]["identifier"][0] for r in ordered[:PAGE_SIZE] + ordered[2 * PAGE_SIZE :]}
        assert len(seen) < N
        assert partial["closed"] == 0 and partial["new"] == 0 and partial["updated"] == 0
        assert partial["unchanged"] == len(seen)
        # EDF-2026-LS-RA-DIS-NT has one row on page 1 and a richer one on page 2: not overwritten.
        assert any(p.startswith("EDF-2026-LS-RA-DIS-NT: change of") for p in partial["problems"])
        assert (await client.get("/calls/EDF-2026-LS-RA-DIS-NT")).json()["budget_eur"] is not None
        listing = (await client.get("/calls", params={"status": "closed"})).json()
        assert listing["total"] == 0

        replay.state.clear_faults()
        gone = TOPIC_IDS[-1]
        replay.state.set_rows([r for r in ROWS if r["metadata"]["identifier"] != [gone]])
        complete = await _poll(client)
        assert complete == {
            "new": 0,
            "updated": 0,
            "unchanged": N - 1,
            "closed": 1,
            "complete": True,
            "unparseable_rows": 0,
            "restarts": 0,
            "problems": [],
        }
        closed = (await client.get(f"/calls/{gone}")).json()
        assert closed["status"] == "closed" and closed["closed_at"] is not None
        events = [_event(r) for r in await _records(kafka_settings, expect=N + 1)]
        closes = [e for e in events if e.type == CallClosed.event_type]
        assert [(e.subject, e.data["reason"]) for e in closes] == [(gone, "no longer listed on the portal")]


async def test_calls_close_once_every_deadline_passed_even_when_the_poll_is_incomplete(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, runtime):
        await _poll(client)
        replay.state.malform_page(2, "not-json")
        config = PortalConfig(endpoint=replay.endpoint, page_size=PAGE_SIZE, max_attempts=1)
        later = date.fromisoformat(max(max(c["deadlines"]) for c in (await client.get("/calls")).json()["items"]))
        today = later + timedelta(days=1)
        counts = await use_cases.poll_once(runtime.uow, config, today=today)
        assert counts.complete is False
        assert (counts.new, counts.updated, counts.closed) == (0, 0, N)
        events = [_event(r) for r in await _records(kafka_settings, expect=2 * N)]
        closes = [e for e in events if e.type == CallClosed.event_type]
        assert sorted(e.subject for e in closes) == TOPIC_IDS
        assert {e.data["reason"] for e in closes} == {use_cases.REASON_DEADLINES}
        listing = (await client.get("/calls", params={"status": "closed"})).json()
        assert listing["total"] == N and all(c["closed_at"] for c in listing["items"])

        again = await use_cases.poll_once(runtime.uow, config, today=today)
        assert (again.new, again.updated, again.closed) == (0, 0, 0)
        assert await _outbox_rows(runtime) == 2 * N


async def test_latest_suggestions_for_a_call_come_from_suggestions_v1(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, runtime):
        await _poll(client)
        call_id = TOPIC_IDS[0]
        empty = (await client.get(f"/calls/{call_id}/suggestions")).json()
        assert empty == {
            "call_id": call_id,
            "algorithm_version": None,
            "computed_at": None,
            "suggestions": [],
        }
        assert (await client.get("/calls/EDF-1999-NOPE/suggestions")).status_code == 404

        newer = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
        older = newer - timedelta(hours=1)
        await produce(
            kafka_settings,
            "suggestions.v1",
            [
                (call_id.encode(), _suggestions(call_id, computed_at=newer, version="m-2")),
                # An older result delivered late (a retry) must not replace the newer one.
                (call_id.encode(), _suggestions(call_id, computed_at=older, version="m-1")),
                (b"p-1", _suggestions("p-1", computed_at=newer, version="m-2", target_type="project")),
            ],
        )
        processor = runtime.processors[0]
        await wait_for(lambda: processor.processed == 3, timeout=30, what="three suggestion events handled")
        body = (await client.get(f"/calls/{call_id}/suggestions")).json()
        assert body["call_id"] == call_id
        assert body["algorithm_version"] == "m-2"
        assert datetime.fromisoformat(body["computed_at"].replace("Z", "+00:00")) == newer
        assert [s["company_id"] for s in body["suggestions"]] == ["c-1"]
        assert body["suggestions"][0]["reasons"]["summary"] == "by m-2"


async def test_background_poller_polls_on_start(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay, poll_on_start=True) as (client, _):

        async def listed() -> bool:
            return bool((await client.get("/calls")).json()["total"] == N)

        await wait_for(listed, timeout=30, what="the start-up poll stored every topic")
        assert len(await _records(kafka_settings, expect=N)) == N


async def test_calls_can_be_listed_by_domain(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    """GET /calls?domain= (the portal's filter) returns exactly the calls tagged with that domain."""
    async with calls_service(databases, kafka_settings, replay) as (client, _runtime):
        await _poll(client)
        everything = (await client.get("/calls", params={"limit": 200})).json()["items"]
        tagged = {d for c in everything for d in c["domains"]}
        assert tagged, "the replay's calls carry domains"
        for domain in tagged:
            listed = (await client.get("/calls", params={"domain": domain, "limit": 200})).json()
            expected = {c["id"] for c in everything if domain in c["domains"]}
            assert {c["id"] for c in listed["items"]} == expected and listed["total"] == len(expected)
        assert (await client.get("/calls", params={"domain": "not-a-domain"})).status_code == 422
