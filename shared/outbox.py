"""Transactional outbox: business rows and their events commit together; a relay publishes them.

A :class:`UnitOfWork` owns the transaction. Domain code calls :meth:`UnitOfWork.emit` to collect
events; :meth:`UnitOfWork.commit` writes them as outbox rows in the *same* transaction as the
business rows, so either both exist or neither does. The :class:`OutboxRelay` then publishes pending
rows with an idempotent ``acks=all`` producer, waits for the broker's acknowledgement, and only then
marks the rows published. A crash between the acknowledgement and the mark re-publishes those rows
(at-least-once); consumers are idempotent, so that is harmless.

One row can never block the others for good. A row the broker refuses for a reason that retrying
cannot cure (the record is too large, it cannot be serialised, …) is *parked*: an
:class:`OutboxParked` row records why, the outbox row itself is kept untouched, ``/healthz`` reports
the service as degraded and the log says which event it was. The rows behind it continue — except
the later rows of the *same key* (topic and aggregate id), which are held back so that no consumer
sees a later event of an aggregate before an earlier one. An admin lists parked rows and retries
them (``shared.outbox_admin``): retrying lifts the parking, and the relay tries the row again in its
original place, before the held rows of its key. A broker-side refusal is learnt only after later
rows may already be in flight: a later row of the parked key that the broker accepted in that same
batch stays published (docs/limits.md).
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
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Index, Text, and_, delete, exists, func, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database
from shared.events.base import CloudEvent, EventData, envelope
from shared.kafka import reliable_producer
from shared.limits import check_event_size
from shared.settings import KafkaSettings
from shared.telemetry import context_from_traceparent, current_traceparent, headers_with_trace, tracer

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

UNPUBLISHABLE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    UnicodeError,
    TypeError,
    ValueError,
)
"""Refusals that concern the record itself: retrying the same row cannot succeed, so it is parked.

Everything else (the broker is away, a leader moved, an ACL is missing) concerns every row alike and
is retried with backoff, in order.
"""


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


class OutboxParked(SQLModel, table=True):
    """An outbox row the broker refused for good, and why; its key's later rows wait behind it.

    A table of its own (not columns on ``outbox``) so that databases created before parking existed
    get it from ``create_all`` without a migration.
    """

    __tablename__ = "outbox_parked"
    __table_args__ = (Index("ix_outbox_parked_key", "topic", "key"),)

    outbox_id: int = Field(primary_key=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=200)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    size_bytes: int
    reason: str = Field(sa_column=Column(Text, nullable=False))
    parked_at: datetime = Field(default_factory=utcnow)


OUTBOX_TABLES: list[type[SQLModel]] = [OutboxRecord, OutboxParked]
"""The tables a database needs for the outbox and its relay."""


def _not_parked() -> Any:
    """Unpublished rows whose key has no parked row: the parked row and the later rows of its key wait."""
    return ~exists().where(
        and_(col(OutboxParked.topic) == col(OutboxRecord.topic), col(OutboxParked.key) == col(OutboxRecord.key))
    )


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

    def emit(self, data: EventData, *, subject: str, event_id: str | None = None) -> CloudEvent:
        """Collect an event; it is written to the outbox when (and only if) the unit commits.

        ``event_id``: an id derived from what the event was computed from, so that computing the same
        result twice (two replicas during a rebalance) yields one event id, which consumers deduplicate.
        """
        ce = envelope(data, source=self._source, subject=subject, event_id=event_id)
        payload = ce.model_dump_json()
        # Refuse here, inside the request, rather than leave the relay a record Kafka will not take.
        check_event_size(ce.type, ce.data, payload)
        self.session.add(
            OutboxRecord(
                event_id=ce.id,
                topic=data.topic,
                key=subject,
                event_type=ce.type,
                payload=payload,
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
        self.parked_total = 0
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
        """One pass: publish up to one batch of pending rows; return how many were published.

        Rows the broker refuses for good are parked (and stay in the outbox); a failure that may pass
        (broker away) is raised after the acknowledged rows are marked, so ``run`` backs off.
        """
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
                        .where(col(OutboxRecord.published_at).is_(None), _not_parked())
                        .order_by(col(OutboxRecord.id))
                        .limit(self._batch_size)
                    )
                ).all()
            )
            if not rows:
                return 0
            producer = await self._started_producer()
            acked, parked, failure = await self._send_all(producer, rows)
            now = utcnow()
            if acked:
                await session.exec(
                    update(OutboxRecord).where(col(OutboxRecord.id).in_([r.id for r in acked])).values(published_at=now)
                )  # type: ignore[call-overload]
            for row, reason in parked:
                session.add(self._park(row, reason, now))
            if failure is not None:
                failed, error = failure
                await session.exec(
                    update(OutboxRecord)
                    .where(col(OutboxRecord.id) == failed.id)
                    .values(attempts=OutboxRecord.attempts + 1, last_error=repr(error)[:2000])
                )  # type: ignore[call-overload]
            await session.commit()
            self.published_total += len(acked)
            self.parked_total += len(parked)
            if failure is not None:
                raise failure[1]
            return len(acked)

    def _park(self, row: OutboxRecord, reason: BaseException, now: datetime) -> OutboxParked:
        assert row.id is not None
        size = len(row.payload.encode("utf-8", errors="replace"))
        log.error(
            "outbox relay of %s PARKED event %s (%s, %d bytes) for key %s on %s: %r; "
            "later events of that key wait; the others continue. List and retry: GET /admin/outbox/parked",
            self._service,
            row.event_id,
            row.event_type,
            size,
            row.key,
            row.topic,
            reason,
        )
        return OutboxParked(
            outbox_id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            topic=row.topic,
            key=row.key,
            size_bytes=size,
            reason=repr(reason)[:2000],
            parked_at=now,
        )

    async def _send_all(
        self, producer: AIOKafkaProducer, rows: list[OutboxRecord]
    ) -> tuple[list[OutboxRecord], list[tuple[OutboxRecord, BaseException]], tuple[OutboxRecord, BaseException] | None]:
        """Send a batch; return the rows the broker acknowledged, the rows to park, and the first other failure.

        A retriable error ends the batch: rows after it are sent again in the next pass, after the
        failed one, so no key sees a later event before an earlier one. A row refused for good is
        parked and the later rows of its key in this batch are not sent.
        """
        sent: list[tuple[OutboxRecord, asyncio.Future[Any], trace.Span]] = []
        parked: list[tuple[OutboxRecord, BaseException]] = []
        blocked: set[tuple[str, str]] = set()
        failure: tuple[OutboxRecord, BaseException] | None = None
        for row in rows:
            if (row.topic, row.key) in blocked:
                continue  # held behind its key's parked row
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
            with trace.use_span(span, end_on_exit=False):
                headers = headers_with_trace({"content-type": CONTENT_TYPE})
            try:
                fut = await producer.send(
                    topic,
                    value=row.payload.encode(),
                    key=row.key.encode(),
                    headers=headers,
                )
            except UNPUBLISHABLE as exc:  # refused before it left (e.g. over max_request_size)
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(exc)))
                span.end()
                parked.append((row, exc))
                blocked.add((row.topic, row.key))
                continue
            except Exception as exc:  # enqueue failed (e.g. metadata timeout): stop the batch here
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(exc)))
                span.end()
                failure = (row, exc)
                break
            sent.append((row, fut, span))
        results = await asyncio.gather(*(fut for _, fut, _ in sent), return_exceptions=True)
        acked: list[OutboxRecord] = []
        suspects: list[OutboxRecord] = []
        stopped = False
        for (row, _, span), result in zip(sent, results, strict=True):
            if stopped or (failure is not None and failure[0] is row):
                span.set_status(trace.Status(trace.StatusCode.ERROR, "not acknowledged in order"))
            elif isinstance(result, UNPUBLISHABLE):
                # The broker refuses a whole batch for one record: which row it was is found below.
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(result)))
                suspects.append(row)
            elif isinstance(result, BaseException):
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(result)))
                failure = (row, result)
                stopped = True
            else:
                # Acknowledged, also when an earlier row of its key was refused by the broker after
                # this one was already in flight (documented: it stays published).
                acked.append(row)
            span.end()
        for row in suspects:
            if (row.topic, row.key) in blocked:
                continue  # held behind its key's parked row
            try:
                await (await self._send(producer, row))
            except UNPUBLISHABLE as exc:  # refused on its own too: this row is the one
                parked.append((row, exc))
                blocked.add((row.topic, row.key))
                continue
            except Exception as exc:  # e.g. the broker went away: retry with backoff
                failure = failure or (row, exc)
                break
            acked.append(row)
        return acked, parked, failure

    async def _send(self, producer: AIOKafkaProducer, row: OutboxRecord) -> asyncio.Future[Any]:
        """Send one row on its own (its trace context in the headers); the future resolves on the ack."""
        with trace.use_span(
            self._tracer.start_span(
                f"{self._kafka.topic(row.topic)} publish",
                context=context_from_traceparent(row.traceparent),
                kind=SpanKind.PRODUCER,
            ),
            end_on_exit=True,
        ):
            headers = headers_with_trace({"content-type": CONTENT_TYPE})
            return await producer.send(
                self._kafka.topic(row.topic), value=row.payload.encode(), key=row.key.encode(), headers=headers
            )

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

    async def parked_count(self) -> int:
        """Rows parked because the broker refused them for good (each holds back its key)."""
        async with self._db.sessions() as session:
            return (await session.exec(select(func.count()).select_from(OutboxParked))).one()

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


class ParkedNotFound(LookupError):
    pass


async def list_parked(db: Database, *, limit: int, offset: int) -> tuple[list[OutboxParked], int]:
    """Parked rows, oldest first, and how many there are."""
    async with db.sessions() as session:
        total = (await session.exec(select(func.count()).select_from(OutboxParked))).one()
        query = select(OutboxParked).order_by(col(OutboxParked.outbox_id)).limit(limit).offset(offset)
        return list((await session.exec(query)).all()), total


async def retry_parked(db: Database, *, outbox_id: int | None = None) -> int:
    """Lift the parking of one row (or of all): the relay tries it again in its original place.

    Returns how many rows were released; raises :class:`ParkedNotFound` for an unknown ``outbox_id``.
    """
    async with db.sessions() as session:
        query = delete(OutboxParked)
        if outbox_id is not None:
            query = query.where(col(OutboxParked.outbox_id) == outbox_id)
        result = await session.exec(query)  # type: ignore[call-overload]
        await session.commit()
    released = int(result.rowcount or 0)
    if outbox_id is not None and released == 0:
        raise ParkedNotFound(outbox_id)
    if released:
        log.warning("released %d parked outbox row(s)%s for another try", released, f" ({outbox_id})" * bool(outbox_id))
    return released


def decode_payload(payload: bytes | str) -> dict[str, Any]:
    """Parse a record value as JSON (raises ValueError on anything else)."""
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("record value is JSON but not an object")
    return value


__all__ = [
    "OUTBOX_TABLES",
    "AfterCommitFailed",
    "OutboxParked",
    "OutboxRecord",
    "OutboxRelay",
    "ParkedNotFound",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "decode_payload",
    "list_parked",
    "retry_parked",
    "utcnow",
]
