"""An operator lists a service's parked events and gives one up, over HTTP, on a real service.

The calls service runs with its lifespan on the real broker and PostgreSQL; the matching service's
``suggestions.computed`` reaches it as a ``v2`` (its producer upgraded first) with a ``v1`` of the same
call behind it. Who may call the two endpoints, for every role and service, is walked by
``test_access_control``; here: what they show and do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.calls.replay.server import ReplayServer
from shared.settings import KafkaSettings
from tests.infra import Databases, wait_for
from tests.integration.kafka_tools import produce, read_topic
from tests.integration.test_calls_service import TOPIC_IDS, _poll, _suggestions, calls_service, replay

pytestmark = pytest.mark.infra
__all__ = ["replay"]  # the fixture, shared with test_calls_service

V1 = "bondgenoot.suggestions.computed.v1"
V2 = "bondgenoot.suggestions.computed.v2"


def _computed(call_id: str, day: int, version: str, *, event_type: str = V1) -> bytes:
    event = json.loads(_suggestions(call_id, computed_at=datetime(2026, 5, day, tzinfo=UTC), version=version))
    event["type"] = event_type
    return json.dumps(event).encode()


async def test_an_admin_lists_parked_events_and_a_discarded_one_is_dead_lettered_and_frees_its_subject(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, runtime):
        await _poll(client)
        call_id = TOPIC_IDS[0]
        key = call_id.encode()
        await produce(
            kafka_settings,
            "suggestions.v1",
            [(key, _computed(call_id, 2, "m-3", event_type=V2)), (key, _computed(call_id, 1, "m-2"))],
        )
        processor = runtime.processors[0]
        await wait_for(lambda: processor.parked == 2, timeout=60, what="the v2 and the v1 behind it parked")
        assert (await client.get("/healthz")).json()["consumers"][processor.consumer]["parked"] == 2

        assert (await client.get("/ops/parked-events", headers={"Authorization": ""})).status_code == 401
        listing = (await client.get("/ops/parked-events")).json()
        assert listing["total"] == 2
        assert [(p["consumer"], p["event_type"], p["reason"], p["subject"]) for p in listing["items"]] == [
            (processor.consumer, V2, "newer-version", call_id),
            (processor.consumer, V1, "behind-parked", call_id),
        ]
        assert [p["offset"] for p in listing["items"]] == [0, 1]
        page = (await client.get("/ops/parked-events", params={"limit": 1, "offset": 1})).json()
        assert page["total"] == 2 and [p["event_type"] for p in page["items"]] == [V1]
        assert (await client.get("/ops/parked-events", params={"limit": 0})).status_code == 422
        assert (await client.get(f"/calls/{call_id}/suggestions")).json()["algorithm_version"] is None

        newer = listing["items"][0]["id"]
        anonymous = await client.post(
            f"/ops/parked-events/{newer}/discard", json={"reason": "x"}, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401
        no_reason = await client.post(f"/ops/parked-events/{newer}/discard", json={"reason": ""})
        assert no_reason.status_code == 422 and "reason" in no_reason.text
        unknown = await client.post(f"/ops/parked-events/{newer + 1000}/discard", json={"reason": "x"})
        assert unknown.status_code == 404 and unknown.json()["detail"] == "no parked event with this id"
        assert (await client.get("/ops/parked-events")).json()["total"] == 2  # refusals changed nothing

        done = await client.post(f"/ops/parked-events/{newer}/discard", json={"reason": "matching rolled back"})
        assert done.status_code == 200, done.text
        assert done.json() == {"subject_free": True}
        [dead] = await read_topic(kafka_settings, "suggestions.v1.dlq", expect=1, timeout=30)
        headers = dict(dead.headers)
        assert headers["dlq.reason"] == b"discarded-from-park"
        assert headers["dlq.error"] == b"matching rolled back"
        assert headers["dlq.original.offset"] == b"0"
        assert json.loads(dead.value or b"{}")["type"] == V2
        # The v1 that waited behind it applied; the subject is free: a later v1 applies at once.
        assert (await client.get(f"/calls/{call_id}/suggestions")).json()["algorithm_version"] == "m-2"
        assert (await client.get("/ops/parked-events")).json() == {"total": 0, "items": []}
        again = await client.post(f"/ops/parked-events/{newer}/discard", json={"reason": "twice"})
        assert again.status_code == 404
        await produce(kafka_settings, "suggestions.v1", [(key, _computed(call_id, 3, "m-4"))])

        async def latest_applied() -> bool:
            body = (await client.get(f"/calls/{call_id}/suggestions")).json()
            return bool(body["algorithm_version"] == "m-4")

        await wait_for(latest_applied, timeout=60, what="the next v1 of the freed subject applied")
        assert processor.halted is None and processor.consecutive_dead_letters == 0
