"""Transactional outbox: business rows and their events commit together; a relay publishes them.

A :class:`UnitOfWork` owns the transaction. Domain code calls :meth:`UnitOfWork.emit` to collect
events; :meth:`UnitOfWork.commit` writes them as outbox rows in the *same* transaction as the
business rows, so either both exist or neither does. The :class:`OutboxRelay` then publishes pending
rows with an idempotent ``acks=all`` producer, waits for the broker's acknowledgement, and only then
marks the rows published. A crash between the acknowledgement and the mark re-publishes those rows
(at-least-once); consumers are idempotent, so that is harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Index, Text, func, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database
from shared.events.base import CloudEvent, EventData, envelope
from shared.kafka import reliable_producer
from shared.settings import KafkaSettings
from shared.telemetry import context_from_traceparent, current_traceparent, headers_with_trace, tracer

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"


def utcnow() -> datetime:
    """Timezone-aware UTC: every timestamp in our tables is UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class OutboxRecord(SQLModel, table=True):
    """One event waiting to be (or already) published."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=64)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=200)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    traceparent: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = Field(default=None)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AfterCommitFailed(RuntimeError):
    """The transaction committed, but an action registered to follow it failed.

    In-memory state kept beside the database (an index, a cache) may now lag behind it; the caller
    must not carry on as if nothing happened (the consumer halts, so a restart rebuilds that state).
    """


class UnitOfWork:
    """One database transaction plus the events it produces; the only place that commits.

    Besides events, a unit collects *after-commit actions* (:meth:`after_commit`): changes to
    in-memory state that mirrors the database. They run once the transaction has committed and
    never when it rolls back, so such state can neither run ahead of the database nor see a
    retried change twice.
    """

    def __init__(self, db: Database, *, source: str, on_commit: Callable[[], None] | None = None) -> None:
        self._db = db
        self._source = source
        self._on_commit = on_commit
        self._events: list[CloudEvent] = []
        self._after_commit: list[Callable[[], object]] = []
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._db.sessions()
        self._events = []
        self._after_commit = []
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Anything not committed explicitly is rolled back: a half-done change never lands.
        self._after_commit = []
        await self.session.rollback()
        await self.session.close()
        self._session = None

    def emit(self, data: EventData, *, subject: str) -> CloudEvent:
        """Collect an event; it is written to the outbox when (and only if) the unit commits."""
        ce = envelope(data, source=self._source, subject=subject)
        self.session.add(
            OutboxRecord(
                event_id=ce.id,
                topic=data.topic,
                key=subject,
                event_type=ce.type,
                payload=ce.model_dump_json(),
                traceparent=current_traceparent(),
            )
        )
        self._events.append(ce)
        return ce

    @property
    def events(self) -> list[CloudEvent]:
        return list(self._events)

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` right after this unit's transaction commits; drop it if the unit rolls back.

        Actions are synchronous on purpose: each runs whole, with no other coroutine in between.
        """
        self._after_commit.append(action)

    async def commit(self) -> None:
        await self.session.commit()
        actions, self._after_commit = self._after_commit, []
        if self._events and self._on_commit is not None:
            self._on_commit()
        self._events = []
        for action in actions:
            try:
                action()
            except Exception as exc:
                raise AfterCommitFailed(f"committed, but the after-commit action {action!r} failed: {exc!r}") from exc

    async def rollback(self) -> None:
        await self.session.rollback()
        self._events = []
        self._after_commit = []


class UnitOfWorkFactory:
    """Makes units of work for one service and tells its relay when events were committed."""

    def __init__(self, db: Database, *, source: str) -> None:
        self.db = db
        self.source = source
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.db, source=self.source, on_commit=self._notify)


class OutboxRelay:
    """Publishes pending outbox rows in id order, marking them only after the broker acknowledged.

    Every pass re-reads *all* unpublished rows from the start (no "last id seen" cursor), so a row
    whose transaction committed late, out of id order, is never skipped. On PostgreSQL a transaction
    scoped advisory lock keeps two relays of the same service from interleaving, which would break
    per-key ordering.

    The lock is a *lease* (``lock_lease_s``): a frozen holder (SIGSTOP, a paused VM, a network
    partition from the database) keeps its connection, so its transaction and lock would live on and
    stall every other replica's relay. The server ends a session idle in that transaction for longer
    than the lease, which frees the lock; the holder's late UPDATE then fails, so it cannot mark rows it
    no longer owns, and what it still sends is a duplicate with the same event id (consumers skip it).
    """

    ADVISORY_LOCK_ID = 0x0B0D_6E00

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 10.0,
        lock_lease_s: float = 30.0,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self._db = db
        self._kafka = kafka
        self._service = service
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._max_backoff_s = max_backoff_s
        self._lock_lease_ms = max(1, round(lock_lease_s * 1000))
        self._producer_factory = producer_factory or (lambda: reliable_producer(kafka, client_id=f"{service}-outbox"))
        self._producer: AIOKafkaProducer | None = None
        self._wakeup = asyncio.Event()
        self._tracer = tracer("bondgenoot.outbox")
        self.published_total = 0
        self.consecutive_failures = 0

    def wake(self) -> None:
        """Called after a commit with events: publish now instead of at the next poll."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, riding out broker and database outages with backoff."""
        try:
            while not stop.is_set():
                try:
                    published = await self.publish_pending()
                    self.consecutive_failures = 0
                except Exception as exc:  # any failure: keep the rows, back off, try again
                    self.consecutive_failures += 1
                    delay = self._backoff(self.consecutive_failures)
                    log.warning(
                        "outbox relay of %s failed (attempt %d), retrying in %.1fs: %r",
                        self._service,
                        self.consecutive_failures,
                        delay,
                        exc,
                    )
                    await self._sleep(stop, delay)
                    continue
                if published < self._batch_size:
                    await self._sleep(stop, self._poll_interval_s, wake=True)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish_pending(self) -> int:
        """One pass: publish up to one batch of pending rows; return how many were published."""
        async with self._db.sessions() as session:
            if not self._db.is_sqlite:
                got = await session.exec(select(func.pg_try_advisory_xact_lock(self.ADVISORY_LOCK_ID)))
                if not got.one():
                    return 0
                # The lease (see the class docstring): SET LOCAL, so it ends with this transaction.
                timeout = str(self._lock_lease_ms)
                await session.exec(select(func.set_config("idle_in_transaction_session_timeout", timeout, True)))
            rows = list(
                (
                    await session.exec(
                        select(OutboxRecord)
                        .where(col(OutboxRecord.published_at).is_(None))
                        .order_by(col(OutboxRecord.id))
                        .limit(self._batch_size)
                    )
                ).all()
            )
            if not rows:
                return 0
            producer = await self._started_producer()
            acked, error = await self._send_all(producer, rows)
            now = utcnow()
            if acked:
                await session.exec(
                    update(OutboxRecord).where(col(OutboxRecord.id).in_([r.id for r in acked])).values(published_at=now)
                )  # type: ignore[call-overload]
            if error is not None:
                failed = rows[len(acked)]
                await session.exec(
                    update(OutboxRecord)
                    .where(col(OutboxRecord.id) == failed.id)
                    .values(attempts=OutboxRecord.attempts + 1, last_error=repr(error)[:2000])
                )  # type: ignore[call-overload]
            await session.commit()
            self.published_total += len(acked)
            if error is not None:
                raise error
            return len(acked)

    async def _send_all(
        self, producer: AIOKafkaProducer, rows: list[OutboxRecord]
    ) -> tuple[list[OutboxRecord], BaseException | None]:
        """Send a batch; return the prefix that the broker acknowledged and the first error.

        Only the acknowledged *prefix* is marked published: rows after a failure are sent again in
        the next pass, after the failed one, so no key sees a later event before an earlier one.
        """
        futures: list[asyncio.Future[Any]] = []
        spans: list[trace.Span] = []
        error: BaseException | None = None
        for row in rows:
            topic = self._kafka.topic(row.topic)
            span = self._tracer.start_span(
                f"{topic} publish",
                context=context_from_traceparent(row.traceparent),
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": topic,
                    "messaging.message.id": row.event_id,
                    "messaging.kafka.message.key": row.key,
                },
            )
            spans.append(span)
            with trace.use_span(span, end_on_exit=False):
                headers = headers_with_trace({"content-type": CONTENT_TYPE})
            try:
                fut = await producer.send(
                    topic,
                    value=row.payload.encode(),
                    key=row.key.encode(),
                    headers=headers,
                )
            except Exception as exc:  # enqueue failed (e.g. metadata timeout): stop the batch here
                error = exc
                break
            futures.append(fut)
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked: list[OutboxRecord] = []
        for row, result in zip(rows, results, strict=False):
            if isinstance(result, BaseException):
                error = result
                break
            acked.append(row)
        for i, span in enumerate(spans):
            if i >= len(acked):
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(error)))
            span.end()
        return acked, error

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:  # also cancelled while connecting (shutdown): never leak the client
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def oldest_unpublished_age_s(self) -> float | None:
        """Seconds since the oldest unpublished row was written (None when nothing is pending)."""
        async with self._db.sessions() as session:
            oldest = (
                await session.exec(
                    select(func.min(OutboxRecord.created_at)).where(col(OutboxRecord.published_at).is_(None))
                )
            ).one()
        if oldest is None:
            return None
        return max(0.0, (utcnow() - as_utc(oldest)).total_seconds())

    async def pending_count(self) -> int:
        async with self._db.sessions() as session:
            return (
                await session.exec(
                    select(func.count()).select_from(OutboxRecord).where(col(OutboxRecord.published_at).is_(None))
                )
            ).one()

    def _backoff(self, attempt: int) -> float:
        base = min(self._max_backoff_s, 0.2 * 2 ** min(attempt, 10))
        return base / 2 + random.uniform(0, base / 2)

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, wake: bool = False) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake:
            waiters.append(asyncio.ensure_future(self._wakeup.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self._wakeup.clear()


def decode_payload(payload: bytes | str) -> dict[str, Any]:
    """Parse a record value as JSON (raises ValueError on anything else)."""
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("record value is JSON but not an object")
    return value


__all__ = [
    "AfterCommitFailed",
    "OutboxRecord",
    "OutboxRelay",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "decode_payload",
    "utcnow",
]
