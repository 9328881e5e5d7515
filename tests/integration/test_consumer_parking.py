"""Events of a newer version are parked per consumer, not dead-lettered, and applied in order after the upgrade.

Real broker and PostgreSQL: a consumer that knows ``bondgenoot.project.closed.v1`` meets ``…v2`` (its
producer was upgraded first), parks it and every later event of the same subject, keeps processing
other subjects, never halts because of it; once upgraded it applies the parked events in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlmodel import Field, SQLModel, col, select

from shared.events.base import EVENT_TYPES, CloudEvent, EventData, envelope
from shared.events.projects import TOPIC as PROJECTS_TOPIC
from shared.events.projects import ProjectClosed
from shared.outbox import UnitOfWork
from shared.parking import ParkedEvent, parked_event
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from tests.infra import Databases, wait_for
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

SLOW = 90.0
"""Generous waits for what must happen eventually: the shared machine can be very busy."""

GROUP = "parking-test.projects"
V1 = ProjectClosed.event_type
V2 = "bondgenoot.project.closed.v2"


class AppliedEvent(SQLModel, table=True):
    """What the handler under test applied, in order."""

    __tablename__ = "test_applied_events"

    id: int | None = Field(default=None, primary_key=True)
    subject: str
    event_type: str


class ProjectClosedV2(EventData):
    """The next version of project.closed, as an upgraded producer would publish it."""

    project_id: str
    reason: str


@contextmanager
def upgraded_contracts() -> Iterator[None]:
    """This process now knows project.closed.v2 (as a consumer deployed with newer contracts would)."""
    ProjectClosedV2.event_type, ProjectClosedV2.topic = V2, PROJECTS_TOPIC
    EVENT_TYPES[V2] = ProjectClosedV2
    try:
        yield
    finally:
        del EVENT_TYPES[V2]


async def record(uow: UnitOfWork, ce: CloudEvent, data: Any) -> None:
    uow.session.add(AppliedEvent(subject=ce.subject, event_type=ce.type))


def _event(subject: str, event_type: str = V1) -> CloudEvent:
    ce = envelope(ProjectClosed(project_id=subject), source="projects", subject=subject)
    if event_type != V1:
        ce.type, ce.data = event_type, {"project_id": subject, "reason": "withdrawn by the institute"}
    return ce


async def _produce(kafka: KafkaSettings, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for ce in events:
            await producer.send_and_wait(
                kafka.topic("projects.v1"), value=ce.model_dump_json().encode(), key=ce.subject.encode()
            )
    finally:
        await producer.stop()


async def _start(db_url: str, kafka: KafkaSettings, handlers: dict[str, Any]) -> ServiceRuntime:
    settings = ServiceSettings(database_url=db_url, kafka=kafka, CONSUMER_DLQ_LIMIT=2)  # type: ignore[call-arg]
    runtime = ServiceRuntime("parking-test", settings, tables=[AppliedEvent])
    runtime.consumer(GROUP, topics=["projects.v1"], handlers=handlers)
    await runtime.start()
    await wait_for(runtime.kafka_ready.is_set, timeout=SLOW, what="runtime connected to Kafka")
    return runtime


async def _applied(runtime: ServiceRuntime) -> list[tuple[str, str]]:
    async with runtime.db.sessions() as s:
        rows = (await s.exec(select(AppliedEvent).order_by(col(AppliedEvent.id)))).all()
        return [(r.subject, r.event_type) for r in rows]


async def _parked(runtime: ServiceRuntime) -> list[tuple[str, str, str]]:
    async with runtime.db.sessions() as s:
        rows = (await s.exec(select(ParkedEvent).order_by(col(ParkedEvent.id)))).all()
        return [(r.subject, r.event_type, r.reason) for r in rows]


async def test_newer_versions_are_parked_then_applied_in_order_once_the_consumer_is_upgraded(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    db_url = databases.create("parking")
    before = await _start(db_url, kafka_settings, {V1: record})
    processor = before.processors[0]
    try:
        unknown = _event("d")
        unknown.type = "bondgenoot.project.exploded.v1"  # no contract has this name: a producer bug
        await _produce(
            kafka_settings,
            [
                _event("a", V2),
                _event("a"),  # behind a's parked v2: must not overtake it
                _event("b"),
                *[_event(f"c{i}", V2) for i in range(3)],  # more than the DLQ limit of 2, yet no halt
                unknown,
            ],
        )
        await wait_for(
            lambda: processor.parked == 5 and processor.processed == 1 and processor.dead_lettered == 1,
            timeout=SLOW,
            what="b applied, 5 parked, 1 dead-lettered",
        )
        assert await _applied(before) == [("b", V1)]
        parked = await _parked(before)  # in order per subject; partitions interleave
        assert [p for p in parked if p[0] == "a"] == [("a", V2, "newer-version"), ("a", V1, "behind-parked")]
        assert sorted(p for p in parked if p[0] != "a") == [(f"c{i}", V2, "newer-version") for i in range(3)]
        dead = await read_topic(kafka_settings, "projects.v1.dlq", expect=2, timeout=10)  # only one is there
        assert [dict(r.headers)["dlq.reason"] for r in dead] == [b"unknown-event-type"]
        assert processor.halted is None
        ok, checks = await before.health()
        assert ok and checks["consumers"][GROUP]["parked"] == 5
    finally:
        await before.stop()

    with upgraded_contracts():
        after = await _start(db_url, kafka_settings, {V1: record, V2: record})
        try:
            # Drained at start-up, before any new record: a's v2 first, then the v1 that waited for it.
            applied = await _applied(after)
            assert len(applied) == 6
            assert [a for a in applied[1:] if a[0] == "a"] == [("a", V2), ("a", V1)]
            assert sorted(a for a in applied[1:] if a[0] != "a") == [(f"c{i}", V2) for i in range(3)]
            assert await _parked(after) == []
            # Another, not yet upgraded replica parked an event of subject e: the next event of e waits
            # for it no longer than it takes to apply it first.
            async with after.db.sessions() as s:
                ce = _event("e", V2)
                parked = parked_event(
                    _Record(kafka_settings.topic("projects.v1"), ce), consumer=GROUP, event_id=ce.id,
                    event_type=ce.type, subject="e", reason="newer-version",
                )  # fmt: skip
                s.add(parked)
                await s.commit()
            await _produce(kafka_settings, [_event("e")])
            await wait_for(
                lambda: _count_applied(after, 8), timeout=SLOW, what="e's parked v2, then its new v1, applied"
            )
            assert (await _applied(after))[6:] == [("e", V2), ("e", V1)]
            ok, checks = await after.health()
            assert ok and checks["consumers"][GROUP]["parked"] == 0
        finally:
            await after.stop()


class _Record:
    """A record as another replica consumed it (for parking it directly)."""

    def __init__(self, topic: str, ce: CloudEvent) -> None:
        self.topic, self.partition, self.offset = topic, 0, 0
        self.key, self.value, self.headers = ce.subject.encode(), ce.model_dump_json().encode(), []


async def _count_applied(runtime: ServiceRuntime, n: int) -> bool:
    return len(await _applied(runtime)) >= n


async def test_a_parked_event_an_operator_discards_is_dead_lettered_and_frees_its_subject(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime = await _start(databases.create("discard"), kafka_settings, {V1: record})
    processor = runtime.processors[0]
    try:
        await _produce(kafka_settings, [_event("a", V2), _event("a")])
        await wait_for(lambda: processor.parked == 2, timeout=SLOW, what="a's v2 and the v1 behind it parked")
        async with runtime.db.sessions() as s:
            newer = (await s.exec(select(ParkedEvent).where(ParkedEvent.event_type == V2))).one()
        # Its producer was rolled back: v2 will never be understood here.
        assert newer.id is not None
        assert await processor.discard_parked(newer.id, reason="producer rolled back to v1") is True
        assert await _applied(runtime) == [("a", V1)]
        assert await _parked(runtime) == []
        [dead] = await read_topic(kafka_settings, "projects.v1.dlq", expect=1, timeout=SLOW)
        headers = dict(dead.headers)
        assert headers["dlq.reason"] == b"discarded-from-park"
        assert headers["dlq.error"] == b"producer rolled back to v1"
        assert processor.consecutive_dead_letters == 0 and processor.halted is None
    finally:
        await runtime.stop()
