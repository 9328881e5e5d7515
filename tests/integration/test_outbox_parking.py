"""One event the broker refuses for good never blocks the others (#9 §1), on the real broker.

The topic is created with a small ``max.message.bytes``, so the broker itself refuses a large record
(MESSAGE_TOO_LARGE, not retriable). Before parking, the relay retried that row forever and published
nothing behind it.
"""

from __future__ import annotations

import json

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlmodel import select

from services.projects.bootstrap import build as build_projects
from services.projects.settings import ProjectsSettings
from shared.db import Database
from shared.events.base import envelope
from shared.events.projects import ProjectClosed
from shared.kafka import all_topics, ensure_topics
from shared.limits import MAX_EVENT_BYTES
from shared.outbox import (
    OUTBOX_TABLES,
    OutboxParked,
    OutboxRecord,
    OutboxRelay,
    UnitOfWorkFactory,
    list_parked,
    retry_parked,
)
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, wait_for
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

SMALL = 4096


async def _admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    return admin


async def test_a_record_the_broker_refuses_is_parked_and_the_rest_are_published_in_order(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    admin = await _admin(kafka_settings)
    try:
        topic = kafka_settings.topic("projects.v1")
        await admin.create_topics(
            [NewTopic(topic, num_partitions=3, replication_factor=1, topic_configs={"max.message.bytes": str(SMALL)})]
        )
        await ensure_topics(kafka_settings, all_topics(kafka_settings))
        db = Database(databases.create("parking"), tables=OUTBOX_TABLES)
        await db.create_tables()
        uow = UnitOfWorkFactory(db, source="projects")
        relay = OutboxRelay(db, kafka_settings, service="projects", poll_interval_s=0.1, max_backoff_s=0.5)
        async with uow() as u:
            before = u.emit(ProjectClosed(project_id="before"), subject="a-before")
            big = u.emit(ProjectClosed(project_id="x" * (SMALL * 2)), subject="big")  # too large for the topic
            held = u.emit(ProjectClosed(project_id="big-later"), subject="big")  # same key: must wait
            after = [u.emit(ProjectClosed(project_id=f"after-{i}"), subject=f"k{i}") for i in range(5)]
            await u.commit()

        for _ in range(5):  # passes until nothing publishable is left; never an endless retry
            await relay.publish_pending()
        records = await read_topic(kafka_settings, "projects.v1", expect=6)
        published = {json.loads(r.value)["id"] for r in records}
        assert published == {before.id, *(e.id for e in after)}  # not the parked one, not the one held behind it

        parked, total = await list_parked(db, limit=10, offset=0)
        assert total == 1 and parked[0].event_id == big.id
        assert "MessageSizeTooLarge" in parked[0].reason and parked[0].size_bytes > SMALL
        assert await relay.parked_count() == 1
        async with db.sessions() as s:  # kept, not dropped
            kept = (await s.exec(select(OutboxRecord).where(OutboxRecord.event_id == big.id))).one()
            assert kept.published_at is None

        # An operator raises the topic's limit and retries: the parked row goes first, then its key's.
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(1_048_588)})]
        )
        assert await retry_parked(db) == 1
        async with db.sessions() as s:
            assert (await s.exec(select(OutboxParked))).all() == []

        async def published_after_retries() -> bool:
            # The new limit reaches the partition leader a little later: until then the broker refuses
            # the row again and it is parked again, so the operator retries again.
            await retry_parked(db)
            try:
                await relay.publish_pending()
            except Exception:  # a retriable broker error: the next round tries again
                return False
            return await relay.pending_count() == 0

        await wait_for(published_after_retries, timeout=60, interval=0.5, what="the parked rows to publish")
        records = await read_topic(kafka_settings, "projects.v1", expect=8)
        keyed = [json.loads(r.value)["id"] for r in records if r.key == b"big"]
        assert keyed == [big.id, held.id]
        await relay.close()
        await db.dispose()
    finally:
        await admin.close()


async def test_a_record_over_the_producer_limit_is_parked_without_reaching_the_broker(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    db = Database(databases.create("parking"), tables=OUTBOX_TABLES)
    await db.create_tables()
    relay = OutboxRelay(db, kafka_settings, service="projects", poll_interval_s=0.1)
    async with db.sessions() as s:  # written as an older version of the service could have
        for key, size in (("huge", 1_100_000), ("ok", 10)):
            payload = json.dumps({"pad": "x" * size})
            s.add(OutboxRecord(event_id=f"e-{key}", topic="projects.v1", key=key, event_type="t", payload=payload))
        await s.commit()
    assert await relay.publish_pending() == 1
    assert [r.key for r in await read_topic(kafka_settings, "projects.v1", expect=1)] == [b"ok"]
    parked, _ = await list_parked(db, limit=10, offset=0)
    assert [p.event_id for p in parked] == ["e-huge"]
    await relay.close()
    await db.dispose()


async def test_an_event_of_the_whole_budget_is_accepted_by_a_broker_with_default_limits(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    """The budget every accepted write is checked against (MAX_EVENT_BYTES) really fits Kafka's defaults.

    tests/unit/test_event_sizes.py shows every write at its maxima stays within the budget; this shows
    the budget itself, with the relay's key and headers, is a record the producer and broker take.
    """
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    db = Database(databases.create("parking"), tables=OUTBOX_TABLES)
    await db.create_tables()
    uow = UnitOfWorkFactory(db, source="projects")
    empty = len(envelope(ProjectClosed(project_id=""), source="projects", subject="s" * 36).model_dump_json())
    target = MAX_EVENT_BYTES - 16  # the envelope's time and id may serialise a few bytes longer
    async with uow() as u:
        # 4-byte characters, as costly as text gets; the rest in ASCII to land on the budget.
        filler = "\U0001d517" * ((target - empty) // 4)
        filler += "x" * (target - empty - len(filler.encode()))
        u.emit(ProjectClosed(project_id=filler), subject="s" * 36)
        await u.commit()
    relay = OutboxRelay(db, kafka_settings, service="projects", poll_interval_s=0.1)
    assert await relay.publish_pending() == 1
    [record] = await read_topic(kafka_settings, "projects.v1", expect=1)
    assert MAX_EVENT_BYTES - 32 <= len(record.value) <= MAX_EVENT_BYTES
    assert await relay.parked_count() == 0
    await relay.close()
    await db.dispose()


async def test_a_service_with_a_parked_row_says_degraded_in_healthz_and_an_admin_can_list_it(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    """Over HTTP, as an operator sees it: 200 (still serving), ``degraded``, the count, the row listed."""
    app, runtime = build_projects(ProjectsSettings(database_url=databases.create("projects"), kafka=kafka_settings))
    async with runtime.lifespan():
        async with runtime.db.sessions() as s:  # written as an older version of the service could have
            s.add(
                OutboxRecord(
                    event_id="e-huge",
                    topic="projects.v1",
                    key="k",
                    event_type="t",
                    payload=json.dumps({"pad": "x" * 1_100_000}),
                )
            )
            await s.commit()
        runtime.relay.wake()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://projects") as client:

            async def degraded() -> bool:  # 503 until the service reached Kafka
                response = await client.get("/healthz")
                return response.status_code == 200 and response.json()["status"] == "degraded"

            await wait_for(degraded, timeout=60, interval=0.2, what="/healthz 200 and degraded")
            assert (await client.get("/healthz")).json()["outbox_parked"] == 1
            listed = await client.get("/admin/outbox/parked", headers=admin_headers())
            assert listed.status_code == 200, listed.text
            assert [row["event_id"] for row in listed.json()["items"]] == ["e-huge"]
