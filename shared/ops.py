"""Operator endpoints every service shares: how many records wait in its dead-letter topics.

``GET /ops/dead-letters`` (admins only) counts the records in ``<topic>.dlq`` for every topic this
service consumes: the sum over partitions of end offset minus beginning offset (retention may have
removed older ones). The portal's admin page shows it beside ``/healthz``'s outbox backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel

from shared.api_docs import errors
from shared.auth import Access, require
from shared.kafka import DLQ_SUFFIX
from shared.settings import KafkaSettings

router = APIRouter(tags=["operations"])


class DeadLetters(BaseModel):
    total: int
    topics: dict[str, int]


async def dead_letter_counts(kafka: KafkaSettings, topics: Sequence[str]) -> dict[str, int]:
    """Records currently held by the dead-letter topic of each logical topic (keyed by DLQ name)."""
    names = [t + DLQ_SUFFIX for t in dict.fromkeys(topics)]
    if not names:
        return {}
    common: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "request_timeout_ms": kafka.request_timeout_ms,
        **kafka.client_security(),
    }
    admin = AIOKafkaAdminClient(**common)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [kafka.topic(n) for n in names if kafka.topic(n) in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    partitions = {
        str(t["topic"]): [TopicPartition(str(t["topic"]), int(p["partition"])) for p in t["partitions"]]
        for t in described
    }
    everything = [tp for tps in partitions.values() for tp in tps]
    counts = {name: 0 for name in names}
    if not everything:
        return counts
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **common)
    await consumer.start()
    try:
        consumer.assign(everything)  # brings the partitions' leaders into the client's metadata
        start = await consumer.beginning_offsets(everything)
        end = await consumer.end_offsets(everything)
    finally:
        await consumer.stop()
    for name in names:
        counts[name] = sum(end[tp] - start[tp] for tp in partitions.get(kafka.topic(name), []))
    return counts


@router.get(
    "/ops/dead-letters",
    response_model=DeadLetters,
    dependencies=[Depends(require(Access.ADMIN))],
    responses=errors(503, d503="Kafka is unavailable"),
)
async def dead_letters(request: Request) -> DeadLetters:
    """Records waiting in the dead-letter topics of what this service consumes."""
    runtime = request.app.state.runtime
    try:
        counts = await dead_letter_counts(runtime.settings.kafka, runtime.consumed_topics)
    except Exception as exc:  # Kafka is away: say so rather than a 500
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Kafka unavailable: {type(exc).__name__}") from exc
    return DeadLetters(total=sum(counts.values()), topics=counts)
