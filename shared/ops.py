"""Operator endpoints every service shares: its dead-letter topics and its consumers' parked events.

``GET /ops/dead-letters`` (admins only) counts the records in ``<topic>.dlq`` for every topic this
service consumes: the sum over partitions of end offset minus beginning offset (retention may have
removed older ones). The portal's admin page shows it beside ``/healthz``'s outbox backlog.

``GET /ops/parked-events`` lists the events this service's consumers parked (a newer version than
they know, and what waits behind it: ``shared.parking``); ``POST /ops/parked-events/{id}/discard``
gives one up (its producer was rolled back, say): it goes to the DLQ and its subject moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from shared.api_docs import errors
from shared.auth import Access, require
from shared.kafka import DLQ_SUFFIX
from shared.limits import MAX_DB_INTEGER
from shared.parking import ParkedNotFound, get_parked, list_parked
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


class ParkedEventOut(BaseModel):
    """An event a consumer keeps until it understands it, or that waits behind such an event."""

    id: int
    consumer: str
    event_type: str
    event_id: str
    subject: str
    topic: str
    partition: int
    offset: int
    reason: str = Field(description="newer-version, or behind-parked (an earlier event of its subject is parked)")
    parked_at: datetime


class ParkedEvents(BaseModel):
    total: int
    items: list[ParkedEventOut]


class Discard(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why it is given up; kept as dlq.error")


class Discarded(BaseModel):
    subject_free: bool = Field(description="Whether the events that waited behind it have been applied now")


@router.get("/ops/parked-events", response_model=ParkedEvents, dependencies=[Depends(require(Access.ADMIN))])
async def parked_events(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ParkedEvents:
    """Events this service's consumers parked, oldest first."""
    rows, total = await list_parked(request.app.state.runtime.db, limit=limit, offset=offset)
    return ParkedEvents(total=total, items=[ParkedEventOut.model_validate(r, from_attributes=True) for r in rows])


@router.post(
    "/ops/parked-events/{parked_id}/discard",
    response_model=Discarded,
    dependencies=[Depends(require(Access.ADMIN))],
    responses=errors(404, d404="No parked event with this id"),
)
async def discard_parked_event(
    parked_id: Annotated[int, Path(ge=1, le=MAX_DB_INTEGER)],  # parked_events.id is an INTEGER column
    body: Discard,
    request: Request,
) -> Discarded:
    """Give up a parked event: it goes to the DLQ (``discarded-from-park``) and its subject moves on."""
    runtime = request.app.state.runtime
    try:
        row = await get_parked(runtime.db, parked_id)
        processor = next((p for p in runtime.processors if p.consumer == row.consumer), None)
        if processor is None:  # parked by a consumer this version of the service no longer runs
            raise ParkedNotFound(parked_id)
        return Discarded(subject_free=await processor.discard_parked(parked_id, reason=body.reason))
    except ParkedNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no parked event with this id") from exc
