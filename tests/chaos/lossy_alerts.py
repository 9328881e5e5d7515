"""A deliberately lossy alerts service: the checker's own test (``tests/chaos/test_chaos.py``).

Its suggestions consumer commits the offset *first* and applies the record a moment later in the
background — FastStream's ACK_FIRST with an asynchronous pipeline behind it, a common at-most-once
design. A SIGKILL in between loses every record in flight: the checker must report missing alerts.
Only the consumer differs from ``python -m services.alerts``; everything else is the real service.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

import shared.runtime
from services.alerts.bootstrap import SUGGESTIONS_GROUP, build
from shared.consumer import EventProcessor
from shared.http import serve
from shared.parking import Record
from shared.settings import KafkaSettings
from shared.subscription import _raw_decoder, subscribe

log = logging.getLogger(__name__)

# Long enough that a kill finds records acknowledged but not yet applied even when the load is light
# (back-pressure pauses it while matching catches up): everything of the last 30 s is in flight.
APPLY_DELAY_S = 30.0
_in_flight: set[asyncio.Task[None]] = set()


def ack_first_subscribe(
    broker: KafkaBroker, processor: EventProcessor, *, topics: list[str], kafka: KafkaSettings, **options: Any
) -> None:
    """``shared.subscription.subscribe`` for every consumer but the suggestions one, which acks first."""
    if processor.consumer != SUGGESTIONS_GROUP:
        subscribe(broker, processor, topics=topics, kafka=kafka, **options)
        return

    async def apply_later(record: Record) -> None:
        await asyncio.sleep(APPLY_DELAY_S)
        await processor.process(record)
        # With the "acked" line, the post-mortem names the records a kill lost (acked, never applied).
        log.warning("LOSSY applied %s[%d]@%d", record.topic, record.partition, record.offset)

    @broker.subscriber(
        *[kafka.topic(t) for t in topics],
        group_id=kafka.topic_prefix + processor.consumer,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        decoder=_raw_decoder,
        title=f"lossy:{processor.consumer}",
    )
    async def on_record(body: bytes, message: KafkaMessage) -> None:
        await message.ack()  # the bug: committed before anything is durable
        raw = cast(Record, message.raw_message)
        log.warning("LOSSY acked %s[%d]@%d", raw.topic, raw.partition, raw.offset)
        task = asyncio.create_task(apply_later(raw))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)


if __name__ == "__main__":
    shared.runtime.subscribe = ack_first_subscribe  # type: ignore[assignment]
    log.warning("LOSSY alerts variant: the suggestions consumer acknowledges before applying")
    serve(*build())
