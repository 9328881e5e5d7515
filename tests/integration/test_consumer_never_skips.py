"""No offset is ever committed past a record that was not processed, on the real broker and PostgreSQL.

Whatever escapes event processing (a dead-letter publish failing during a broker hiccup, a parser blowing
its stack, a bug) must leave the record's partition where it is: the consumer seeks back and retries,
and nothing behind the record is processed or committed meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from shared.consumer import EventProcessor, RetryPolicy
from shared.dead_letters import DeadLetterPublisher
from shared.events.base import envelope
from shared.events.projects import ProjectClosed
from shared.json_bounds import JsonBounds
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from tests.infra import Databases, wait_for
from tests.integration.kafka_tools import Widget, read_topic
from tests.integration.test_consumer import _count, count_widget

pytestmark = pytest.mark.infra

SLOW = 90.0
"""Generous waits for what must happen eventually: the shared machine can be very busy."""

GROUP = "never-skips.widgets"
FAST_STALL_RETRY = RetryPolicy(backoff_s=0.05, max_backoff_s=0.2)


class FlakyDeadLetters:
    """Makes the runtime's dead-letter publisher fail (as during a broker hiccup) until ``heal``."""

    def __init__(self, publisher: DeadLetterPublisher, *, failures: int | None) -> None:
        self._publish = publisher.publish
        self.failures_left = failures
        self.calls = 0
        self.healed = asyncio.Event()
        publisher.publish = self.publish  # type: ignore[method-assign]

    def heal(self) -> None:
        self.healed.set()

    async def publish(self, record: ConsumerRecord[Any, Any], **kw: Any) -> None:
        self.calls += 1
        if self.failures_left is None and not self.healed.is_set():
            raise KafkaConnectionError("injected: broker unreachable")
        if self.failures_left:
            self.failures_left -= 1
            raise KafkaConnectionError("injected: broker unreachable")
        await self._publish(record, **kw)


def _event(project_id: str) -> bytes:
    ce = envelope(ProjectClosed(project_id=project_id), source="projects", subject=project_id)
    return ce.model_dump_json().encode()


async def _produce(kafka: KafkaSettings, values: list[bytes], *, key: bytes = b"same-partition") -> list[int]:
    """Write records to one partition (one key); return their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=4_000_000)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(kafka.topic("projects.v1"), value=v, key=key) for v in values]
    finally:
        await producer.stop()
    assert len({m.partition for m in sent}) == 1
    return [m.offset for m in sent]


async def _committed(kafka: KafkaSettings) -> dict[int, int]:
    """The group's committed offsets on projects.v1, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(kafka.topic_prefix + GROUP)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == kafka.topic("projects.v1")}


async def _start(
    databases: Databases, kafka: KafkaSettings, *, flaky: int | None = 0, bounds: JsonBounds | None = None
) -> tuple[ServiceRuntime, EventProcessor, FlakyDeadLetters]:
    settings = ServiceSettings(database_url=databases.create("skips"), kafka=kafka)
    runtime = ServiceRuntime("never-skips", settings, tables=[Widget])
    processor = runtime.consumer(GROUP, topics=["projects.v1"], handlers={ProjectClosed.event_type: count_widget})
    processor.stall_retry = FAST_STALL_RETRY
    if bounds is not None:
        processor.bounds = bounds
    dead_letters = FlakyDeadLetters(runtime.dead_letters, failures=flaky)
    await runtime.start()
    await wait_for(runtime.kafka_ready.is_set, timeout=SLOW, what="runtime connected to Kafka")
    return runtime, processor, dead_letters


async def test_no_record_is_skipped_when_the_dead_letter_publish_fails_once(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime, processor, dead_letters = await _start(databases, kafka_settings, flaky=1)
    try:
        bad, good = await _produce(kafka_settings, [b"{not json", _event("after-the-bad-one")])
        await wait_for(lambda: processor.processed == 1, timeout=SLOW, what="the record behind the bad one processed")
        dead = await read_topic(kafka_settings, "projects.v1.dlq", expect=2, timeout=5)  # only one is there
        # The failed publish was retried: the bad record is in the DLQ, not skipped.
        assert [dict(r.headers)["dlq.original.offset"] for r in dead] == [str(bad).encode()]
        assert dead_letters.calls == 2
        assert await _count(runtime, "after-the-bad-one") == 1
        assert processor.stalls == {}
        committed = await _committed(kafka_settings)
        assert sorted(committed.values())[-1] == good + 1
    finally:
        await runtime.stop()


async def test_a_record_that_cannot_be_dead_lettered_holds_its_partition_until_it_can(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime, processor, dead_letters = await _start(databases, kafka_settings, flaky=None)
    try:
        bad, good = await _produce(kafka_settings, [b"{not json", _event("waits")])
        await wait_for(lambda: dead_letters.calls >= 3, timeout=SLOW, what="the dead-letter publish retried")
        # Nothing behind the failing record ran, and no commit went past it.
        assert processor.processed == 0
        assert await _count(runtime, "waits") == 0
        assert all(offset <= bad for offset in (await _committed(kafka_settings)).values())
        ok, checks = await runtime.health()
        [stalled] = checks["consumers"][GROUP]["stalled"]
        assert not ok
        assert stalled["offset"] == bad and "KafkaConnectionError" in stalled["error"]
        dead_letters.heal()
        await wait_for(
            lambda: processor.processed == 1, timeout=SLOW, what="the record behind it processed after the hiccup"
        )
        assert len(await read_topic(kafka_settings, "projects.v1.dlq", expect=1, timeout=SLOW)) == 1
        assert processor.stalls == {}
        assert max((await _committed(kafka_settings)).values()) == good + 1
    finally:
        await runtime.stop()


async def test_deeply_nested_and_oversized_json_is_dead_lettered_with_a_reason(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime, processor, _ = await _start(databases, kafka_settings, bounds=JsonBounds(max_bytes=50_000, max_depth=32))
    try:
        nested = b"[" * 20_000 + b"]" * 20_000  # blows json.loads' recursion limit: RecursionError
        deep_event = json.loads(_event("deep"))
        deep_event["data"]["extra"] = json.loads("[" * 40 + "]" * 40)  # valid, but past the configured depth
        big = json.dumps({**json.loads(_event("big")), "padding": "x" * 60_000}).encode()
        await _produce(kafka_settings, [nested, json.dumps(deep_event).encode(), big, _event("fine")])
        await wait_for(lambda: processor.processed == 1, timeout=SLOW, what="the record behind them processed")
        assert await _count(runtime, "fine") == 1
        dead = await read_topic(kafka_settings, "projects.v1.dlq", expect=3, timeout=SLOW)
        headers = [dict(r.headers) for r in dead]
        assert [h["dlq.reason"] for h in headers] == [b"too-deep", b"too-deep", b"too-large"]
        assert b"depth" in headers[0]["dlq.error"] and b"32" in headers[0]["dlq.error"]
        assert b"60" in headers[2]["dlq.error"] and b"50000" in headers[2]["dlq.error"]
        assert dead[0].value == nested  # the record itself, unchanged
        assert processor.stalls == {}
    finally:
        await runtime.stop()
