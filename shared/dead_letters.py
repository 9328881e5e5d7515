"""Dead letters: a record that cannot be processed goes to ``<topic>.dlq``, unchanged, with the reason.

Headers: ``dlq.reason`` (a short code such as ``invalid-json``, ``too-deep``, ``schema-violation``,
``unknown-event-type``, ``handler-failed``), ``dlq.error`` (the detail), ``dlq.consumer``,
``dlq.original.topic/partition/offset`` and ``dlq.time``; the record's own headers are kept.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from shared.kafka import DLQ_SUFFIX, reliable_producer
from shared.parking import Record
from shared.settings import KafkaSettings


class DeadLetterPublisher:
    """Sends a record that cannot be processed to ``<topic>.dlq``, unchanged, with the reason."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = reliable_producer(self._kafka, client_id=self._client_id)
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, record: Record, *, consumer: str, reason: str, detail: str) -> None:
        headers = [
            *[(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq.")],
            ("dlq.reason", reason.encode()),
            ("dlq.error", detail[:4000].encode()),
            ("dlq.consumer", consumer.encode()),
            ("dlq.original.topic", record.topic.encode()),
            ("dlq.original.partition", str(record.partition).encode()),
            ("dlq.original.offset", str(record.offset).encode()),
            ("dlq.time", datetime.now(UTC).isoformat().encode()),
        ]
        topic = record.topic if record.topic.endswith(DLQ_SUFFIX) else record.topic + DLQ_SUFFIX
        if self._producer is None:
            raise RuntimeError("dead-letter publisher used before start()")
        try:
            # Awaiting the acknowledgement before the offset commit: a dead letter is never lost.
            await (await self._producer.send(topic, value=record.value, key=record.key, headers=headers))
        except (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError):
            # The record plus our headers no longer fits: the dead letter points at the original instead,
            # which stays in its topic (retention permitting) at dlq.original.partition/offset.
            size = len(record.value or b"")
            headers.append(("dlq.value-omitted", f"{size} bytes: too large to copy".encode()))
            await (await self._producer.send(topic, value=None, key=record.key, headers=headers))
