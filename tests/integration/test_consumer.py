"""The idempotent consumer and dead letters against the real broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.events.base import CloudEvent, envelope
from shared.events.projects import ProjectClosed
from shared.outbox import UnitOfWork
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from tests.infra import Databases, wait_for
from tests.integration.kafka_tools import Widget, produce, read_topic

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


async def count_widget(uow: UnitOfWork, ce: CloudEvent, data: Any) -> None:
    """The side effect under test: count how often an event was applied."""
    widget = await uow.session.get(Widget, data.project_id) or Widget(id=data.project_id, count=0)
    widget.count += 1
    uow.session.add(widget)


def _event_bytes(project_id: str, *, event_id: str | None = None) -> bytes:
    ce = envelope(ProjectClosed(project_id=project_id), source="projects", subject=project_id)
    if event_id:
        ce.id = event_id
    return ce.model_dump_json().encode()


async def _runtime(databases: Databases, kafka: KafkaSettings) -> ServiceRuntime:
    settings = ServiceSettings(database_url=databases.create("consumer"), kafka=kafka)
    runtime = ServiceRuntime("consumer-test", settings, tables=[Widget])
    runtime.consumer("consumer-test.widgets", topics=["projects.v1"], handlers={ProjectClosed.event_type: count_widget})
    await runtime.start()
    await wait_for(runtime.kafka_ready.is_set, timeout=30, what="runtime connected to Kafka")
    return runtime


async def _count(runtime: ServiceRuntime, widget_id: str) -> int:
    async with runtime.db.sessions() as s:
        w = await s.get(Widget, widget_id)
        return w.count if w else 0


async def test_same_event_delivered_twice_changes_state_once(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime = await _runtime(databases, kafka_settings)
    try:
        record = _event_bytes("w-dup")
        await produce(kafka_settings, "projects.v1", [(b"w-dup", record), (b"w-dup", record)])
        processor = runtime.processors[0]
        await wait_for(lambda: processor.processed + processor.duplicates == 2, what="both deliveries handled")
        assert await _count(runtime, "w-dup") == 1
        assert processor.duplicates == 1
    finally:
        await runtime.stop()


async def test_malformed_and_schema_invalid_records_are_dead_lettered_and_the_next_is_processed(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    runtime = await _runtime(databases, kafka_settings)
    try:
        bad_schema = json.loads(_event_bytes("x"))
        del bad_schema["data"]["project_id"]
        await produce(
            kafka_settings,
            "projects.v1",
            [
                (b"k", b"{not json"),
                (b"k", json.dumps(bad_schema).encode()),
                (b"k", _event_bytes("w-good")),
            ],
        )
        await wait_for(lambda: runtime.processors[0].processed == 1, what="the good record processed")
        assert await _count(runtime, "w-good") == 1
        dead = await read_topic(kafka_settings, "projects.v1.dlq", expect=2)
        reasons = [dict(r.headers) for r in dead]
        assert [h["dlq.reason"] for h in reasons] == [b"invalid-json", b"schema-violation"]
        assert b"project_id" in reasons[1]["dlq.error"]
        assert {h["dlq.consumer"] for h in reasons} == {b"consumer-test.widgets"}
        assert {h["dlq.original.topic"] for h in reasons} == {kafka_settings.topic("projects.v1").encode()}
        assert dead[0].value == b"{not json"
        assert all(h["dlq.original.offset"].isdigit() for h in reasons)
    finally:
        await runtime.stop()


async def test_consumer_halts_after_too_many_dead_letters_in_a_row(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    settings = ServiceSettings(database_url=databases.create("halt"), kafka=kafka_settings, CONSUMER_DLQ_LIMIT=3)  # type: ignore[call-arg]
    runtime = ServiceRuntime("halt-test", settings, tables=[Widget])
    processor = runtime.consumer(
        "halt-test.widgets", topics=["projects.v1"], handlers={ProjectClosed.event_type: count_widget}
    )
    await runtime.start()
    try:
        await produce(kafka_settings, "projects.v1", [(b"k", b"garbage")] * 5 + [(b"k", _event_bytes("after"))])
        await wait_for(lambda: processor.halted is not None, what="consumer halted")
        assert runtime.halt_reason is not None
        dead = await read_topic(kafka_settings, "projects.v1.dlq", expect=5, timeout=5)
        assert len(dead) == 3  # it stopped instead of draining the topic
        assert await _count(runtime, "after") == 0
    finally:
        await runtime.stop()


def test_consumer_killed_after_side_effects_before_commit_processes_redelivery_once(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    db_url = databases.create("crash")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CRASH_DB_URL": db_url,
    }
    script = [sys.executable, "-m", "tests.integration.crashing_consumer"]
    first = subprocess.run(
        script,
        env={**env, "CRASH_AFTER_SIDE_EFFECTS": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 17, first.stderr[-3000:]  # killed by the hook, before the offset commit
    second = subprocess.run(script, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result == {"count": 1, "processed": 0, "duplicates": 1}
