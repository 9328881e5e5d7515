"""The FastStream subscriber around an :class:`~shared.consumer.EventProcessor`: commit exactly, or rewind.

With ``AckPolicy.MANUAL`` FastStream only logs an exception that escapes a handler and fetches the
next record; acknowledging that one would commit every position fetched so far — past the failed
record (ag2ai/faststream#2618). So a record is committed by its own offset once processed, and a
record whose processing escaped is sought back to and retried: nothing behind it is processed or
committed until it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.consumer import ConsumerHalted, EventProcessor
from shared.parking import Record
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

Gate = Callable[[bytes], Awaitable[bool]]

HALTED_POLL_S = 5.0


async def _raw_decoder(msg: Any) -> Any:
    """Hand the handler the raw bytes: JSON and schema checks are ours, so failures can be dead-lettered."""
    return msg.body


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _rewind(consumer: AIOKafkaConsumer, record: Record) -> None:
    """Seek the record's partition back to it, so it is fetched again and nothing behind it is."""
    try:
        consumer.seek(TopicPartition(record.topic, record.partition), record.offset)
    except IllegalStateError:
        # Revoked meanwhile: its next owner starts from the last commit, at or before this record.
        log.info("%s[%d] revoked; its next owner resumes at or before %d", *_where(record))


async def _commit(consumer: AIOKafkaConsumer, record: Record, group: str) -> None:
    """Commit exactly this record's offset (not every position the consumer has fetched)."""
    try:
        await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
    except (KafkaError, IllegalStateError) as exc:
        # Its side effects are durable and its inbox row makes redelivery a no-op; the next commit
        # of this partition covers it, or its next owner processes it again harmlessly.
        log.warning("%s: commit of %s[%d]@%d failed: %r", group, record.topic, record.partition, record.offset, exc)


def subscribe(
    broker: KafkaBroker,
    processor: EventProcessor,
    *,
    topics: list[str],
    kafka: KafkaSettings,
    workers: int = 1,
    gate: Gate | None = None,
    max_poll_interval_ms: int = 300_000,
    listener: ConsumerRebalanceListener | None = None,
) -> None:
    """Register a FastStream subscriber that runs ``processor`` and commits only after it returns.

    ``workers`` > 1 runs that many consumers of the group in this process: partitions in parallel,
    each partition in order, each consumer committing only its own partitions. ``gate(body)`` runs
    before processing (e.g. a retry level waiting until a job is due); when it answers False the
    record is left uncommitted and its partition rewound, so it is consumed again. ``listener`` hears
    which partitions the group gives this consumer (aiokafka calls every member's
    ``on_partitions_revoked`` before any member's ``on_partitions_assigned``).
    """
    physical = [kafka.topic(t) for t in topics]

    @broker.subscriber(
        *physical,
        # The prefix that isolates topics (tenants, test runs) isolates consumer groups too.
        group_id=kafka.topic_prefix + processor.consumer,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        decoder=_raw_decoder,
        max_workers=workers,
        max_poll_interval_ms=max_poll_interval_ms,
        listener=listener,
        title=f"{processor.consumer}:{','.join(topics)}",
    )
    async def on_record(body: bytes, message: KafkaMessage) -> None:
        # Not a batch subscriber: one ConsumerRecord, fetched by this worker's own consumer.
        record = cast(Record, message.raw_message)
        consumer = cast(AIOKafkaConsumer, message.consumer)
        try:
            if gate is not None and not await gate(body):
                _rewind(consumer, record)
                return
            await processor.process(record)
        except ConsumerHalted:
            # Halted on purpose (and said so): hold the partition at this record until the service stops.
            _rewind(consumer, record)
            await asyncio.sleep(HALTED_POLL_S)
            return
        except Exception as exc:
            # Whatever escaped, this record is not done: never let a later commit pass it.
            _rewind(consumer, record)
            await asyncio.sleep(processor.stalled_on(record, exc))
            return
        processor.done_with(record)
        await _commit(consumer, record, processor.consumer)
