"""The transactional outbox against the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest
from sqlmodel import select

from shared.db import Database
from shared.events.projects import ProjectClosed
from shared.kafka import all_topics, ensure_topics
from shared.outbox import OUTBOX_TABLES, OutboxRecord, OutboxRelay, UnitOfWorkFactory
from shared.settings import KafkaSettings
from tests.infra import Databases, KafkaBroker, free_port, wait_for
from tests.integration.kafka_tools import Widget, read_topic

pytestmark = pytest.mark.infra


async def _setup(databases: Databases, kafka: KafkaSettings) -> tuple[Database, UnitOfWorkFactory, OutboxRelay]:
    db = Database(databases.create("outbox"), tables=[*OUTBOX_TABLES, Widget])
    await db.create_tables()
    await ensure_topics(kafka, all_topics(kafka))
    uow = UnitOfWorkFactory(db, source="registry")
    relay = OutboxRelay(db, kafka, service="test", poll_interval_s=0.1, max_backoff_s=1.0)
    uow.on_commit(relay.wake)
    return db, uow, relay


async def test_business_write_and_event_commit_together(databases: Databases, kafka_settings: KafkaSettings) -> None:
    db, uow, relay = await _setup(databases, kafka_settings)
    async with uow() as u:
        u.session.add(Widget(id="w1", count=1))
        ce = u.emit(ProjectClosed(project_id="w1"), subject="w1")
        await u.commit()
    async with db.sessions() as s:
        assert (await s.get(Widget, "w1")) is not None
        row = (await s.exec(select(OutboxRecord))).one()
        assert row.event_id == ce.id and row.published_at is None
    assert await relay.publish_pending() == 1
    records = await read_topic(kafka_settings, "projects.v1", expect=1)
    assert [json.loads(r.value)["id"] for r in records] == [ce.id]
    assert records[0].key == b"w1"
    assert dict(records[0].headers)["content-type"].startswith(b"application/cloudevents+json")
    assert await relay.oldest_unpublished_age_s() is None
    await relay.close()
    await db.dispose()


async def test_rolled_back_transaction_publishes_nothing(databases: Databases, kafka_settings: KafkaSettings) -> None:
    db, uow, relay = await _setup(databases, kafka_settings)
    with pytest.raises(RuntimeError):
        async with uow() as u:
            u.session.add(Widget(id="w2"))
            u.emit(ProjectClosed(project_id="w2"), subject="w2")
            await u.session.flush()
            raise RuntimeError("business rule failed after the event was emitted")
    async with uow() as u:  # a unit left without commit also rolls back
        u.emit(ProjectClosed(project_id="w3"), subject="w3")
    async with db.sessions() as s:
        assert (await s.exec(select(OutboxRecord))).all() == []
        assert (await s.get(Widget, "w2")) is None
    assert await relay.publish_pending() == 0
    assert await read_topic(kafka_settings, "projects.v1", expect=1, timeout=3) == []
    await relay.close()
    await db.dispose()


async def test_order_per_key_holds_over_1000_events_on_3_partitions(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    db, uow, relay = await _setup(databases, kafka_settings)
    expected: dict[str, list[str]] = defaultdict(list)
    for batch in range(20):
        async with uow() as u:
            for i in range(50):
                key = f"agg-{(batch * 50 + i) % 17}"
                ce = u.emit(ProjectClosed(project_id=key), subject=key)
                expected[key].append(ce.id)
            await u.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    records = await read_topic(kafka_settings, "projects.v1", expect=1000, timeout=60)
    stop.set()
    await task
    got: dict[str, list[str]] = defaultdict(list)
    partitions = set()
    for r in records:
        got[r.key.decode()].append(json.loads(r.value)["id"])
        partitions.add(r.partition)
    assert len(records) == 1000
    assert partitions == {0, 1, 2}
    assert got == expected
    await db.dispose()


async def test_writes_succeed_while_broker_is_down_and_are_published_when_it_returns(
    databases: Databases, pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A broker of its own: stopping the shared one would disturb the other tests.
    broker = KafkaBroker(port=free_port(), controller_port=free_port(), run_dir=tmp_path_factory.mktemp("kafka-outage"))
    broker.up()
    try:
        kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, KAFKA_REQUEST_TIMEOUT_MS=3000)  # type: ignore[call-arg]
        db, uow, relay = await _setup(databases, kafka)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        ids: list[str] = []
        async with uow() as u:
            ids.append(u.emit(ProjectClosed(project_id="before"), subject="before").id)
            await u.commit()
        await wait_for(lambda: relay.published_total == 1, what="first event published")

        broker.down()
        for i in range(30):
            async with uow() as u:
                u.session.add(Widget(id=f"outage-{i}"))
                ids.append(u.emit(ProjectClosed(project_id=f"k{i % 4}"), subject=f"k{i % 4}").id)
                await u.commit()
        await asyncio.sleep(2)
        assert await relay.pending_count() == 30
        age = await relay.oldest_unpublished_age_s()
        assert age is not None and age >= 1.0

        broker.up()

        async def drained() -> bool:
            return await relay.pending_count() == 0

        await wait_for(drained, timeout=90, what="outbox drained")
        await wait_for(lambda: relay.published_total >= 31, timeout=90, what="all events published")
        stop.set()
        await task
        records = await read_topic(kafka, "projects.v1", expect=31, timeout=30)
        assert {json.loads(r.value)["id"] for r in records} == set(ids)
        await db.dispose()
    finally:
        broker.down()
