"""Small helpers for reading and writing test topics with a plain aiokafka client."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlmodel import Field, SQLModel

from shared.settings import KafkaSettings


class Widget(SQLModel, table=True):
    """A business row for shared-library tests."""

    __tablename__ = "test_widgets"

    id: str = Field(primary_key=True)
    count: int = 0


async def read_topic(
    settings: KafkaSettings, topic: str, *, expect: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning until ``expect`` records arrived (or the timeout)."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def produce(settings: KafkaSettings, topic: str, values: list[tuple[bytes, bytes]], **kw: Any) -> None:
    """Write raw (key, value) records, as a misbehaving or foreign producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topic(topic), value=value, key=key, **kw)
    finally:
        await producer.stop()
