"""The idempotent consumer: explicit group, commit after durable side effects, dead letters.

Contract of :class:`EventProcessor.process`, the heart of every Kafka handler in Bondgenoot:

1. The record value must be a JSON CloudEvent whose ``data`` fits the contract of its ``type``;
   otherwise the record goes to ``<topic>.dlq`` with the reason in its headers.
2. The handler runs inside a :class:`UnitOfWork` together with an inbox row keyed by
   (consumer, event id). Both commit in one transaction, so a redelivered event finds its inbox row
   and changes nothing the second time.
3. A handler error is retried a bounded number of times, then dead-lettered. Infrastructure errors
   (the database is unreachable) are retried until it comes back: dead-lettering a healthy stream
   because our own database blinked would lose the stream.
4. Only then does the caller commit the Kafka offset (``AckPolicy.MANUAL``; FastStream's default,
   ACK_FIRST, commits *before* processing and is at-most-once).
5. Too many dead letters in a row means something is wrong with us, not with the data (a bad
   deploy): the consumer halts without committing, instead of dead-lettering the whole topic.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Field, SQLModel

from shared.events.base import CloudEvent, EventData, UnknownEventType, parse_data
from shared.kafka import DLQ_SUFFIX, reliable_producer
from shared.outbox import UnitOfWork, UnitOfWorkFactory, decode_payload, utcnow
from shared.settings import KafkaSettings
from shared.telemetry import context_from_headers, tracer

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, CloudEvent, Any], Awaitable[None]]


class InboxRecord(SQLModel, table=True):
    """An event this consumer has already applied; its presence makes redelivery a no-op."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=200)
    processed_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing handler is retried before its record is dead-lettered."""

    max_attempts: int = 3
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)


@dataclass(frozen=True)
class DlqLimit:
    """Halt the consumer after this many dead letters in a row."""

    max_consecutive: int = 50


class ConsumerHalted(RuntimeError):
    """The consumer stopped on purpose; its current record is not committed."""


class PoisonRecord(ValueError):
    """A record that can never be processed (bad JSON, bad schema); ``reason`` names why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Lost connections only: a handler bug raising some other OSError must end in the DLQ, not loop forever.
_TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _TRANSIENT_DB_ERRORS)


class EventProcessor:
    """Runs one consumer's handlers for one record at a time (see the module docstring)."""

    def __init__(
        self,
        *,
        consumer: str,
        uow_factory: UnitOfWorkFactory,
        handlers: Mapping[str, Handler],
        dead_letters: DeadLetterPublisher,
        retry: RetryPolicy = RetryPolicy(),
        dlq_limit: DlqLimit = DlqLimit(),
        on_halt: Callable[[str], None] | None = None,
        after_side_effects: Callable[[CloudEvent], Awaitable[None]] | None = None,
    ) -> None:
        self.consumer = consumer
        self._uow = uow_factory
        self._handlers = dict(handlers)
        self._dead_letters = dead_letters
        self._retry = retry
        self._dlq_limit = dlq_limit
        self._on_halt = on_halt
        # A test hook: runs after the side effects are durable and before the offset commit.
        self._after_side_effects = after_side_effects
        self._tracer = tracer("bondgenoot.consumer")
        self.consecutive_dead_letters = 0
        self.halted: str | None = None
        self.processed = 0
        self.duplicates = 0

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Process one record durably; return when its offset may be committed."""
        if self.halted:
            raise ConsumerHalted(self.halted)
        with self._tracer.start_as_current_span(
            f"{record.topic} process",
            context=context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.source.name": record.topic,
                "messaging.consumer.group.name": self.consumer,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
            },
        ) as span:
            try:
                ce, data = self._decode(record)
            except PoisonRecord as poison:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(poison)))
                await self._dead_letter(record, poison.reason, poison.detail)
                return
            span.set_attribute("messaging.message.id", ce.id)
            span.set_attribute("cloudevents.event_type", ce.type)
            handler = self._handlers.get(ce.type)
            if handler is None:
                # A known event type this consumer has no interest in: nothing to do.
                self.consecutive_dead_letters = 0
                return
            await self._apply_with_retries(record, ce, data, handler, span)

    def _decode(self, record: ConsumerRecord[Any, Any]) -> tuple[CloudEvent, EventData]:
        if record.value is None:
            raise PoisonRecord("invalid-json", "record has no value")
        try:
            raw = decode_payload(record.value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PoisonRecord("invalid-json", str(exc)) from exc
        try:
            ce = CloudEvent.model_validate(raw)
        except ValidationError as exc:
            raise PoisonRecord("invalid-envelope", _brief(exc)) from exc
        try:
            data = parse_data(ce)
        except UnknownEventType as exc:
            raise PoisonRecord("unknown-event-type", str(exc)) from exc
        except ValidationError as exc:
            raise PoisonRecord("schema-violation", _brief(exc)) from exc
        return ce, data

    async def _apply_with_retries(
        self,
        record: ConsumerRecord[Any, Any],
        ce: CloudEvent,
        data: EventData,
        handler: Handler,
        span: trace.Span,
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await self._apply_once(ce, data, handler)
            except Exception as exc:
                if _is_transient(exc):
                    # Our own infrastructure is down: wait for it, do not blame the record.
                    delay = self._retry.delay(min(attempt, 6))
                    log.warning("%s: database unavailable, retrying %s in %.1fs: %r", self.consumer, ce.id, delay, exc)
                    await asyncio.sleep(delay)
                    attempt = min(attempt, self._retry.max_attempts - 1)
                    continue
                if attempt < self._retry.max_attempts:
                    delay = self._retry.delay(attempt)
                    log.warning(
                        "%s: handler failed for %s (attempt %d/%d), retrying in %.2fs: %r",
                        self.consumer,
                        ce.id,
                        attempt,
                        self._retry.max_attempts,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                    continue
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(exc)))
                await self._dead_letter(record, "handler-failed", f"{type(exc).__name__}: {exc}")
                return
            break
        self.consecutive_dead_letters = 0
        if applied:
            self.processed += 1
        else:
            self.duplicates += 1
            span.set_attribute("bondgenoot.duplicate", True)
        if self._after_side_effects is not None:
            await self._after_side_effects(ce)

    async def _apply_once(self, ce: CloudEvent, data: EventData, handler: Handler) -> bool:
        """Apply the event in one transaction with its inbox row; False if it was applied before."""
        async with self._uow() as uow:
            uow.session.add(InboxRecord(consumer=self.consumer, event_id=ce.id, event_type=ce.type))
            try:
                # Insert first, then act: a concurrent duplicate fails here instead of racing a check.
                await uow.session.flush()
            except IntegrityError:
                return False
            await handler(uow, ce, data)
            await uow.commit()
        return True

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str, detail: str) -> None:
        self.consecutive_dead_letters += 1
        log.error(
            "%s: dead-lettering %s[%d]@%d (%s): %s",
            self.consumer,
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail,
        )
        await self._dead_letters.publish(record, consumer=self.consumer, reason=reason, detail=detail)
        if self.consecutive_dead_letters >= self._dlq_limit.max_consecutive:
            self.halted = (
                f"{self.consumer} dead-lettered {self.consecutive_dead_letters} records in a row; "
                "halting instead of draining the topic into its DLQ"
            )
            log.critical(self.halted)
            if self._on_halt is not None:
                self._on_halt(self.halted)


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

    async def publish(self, record: ConsumerRecord[Any, Any], *, consumer: str, reason: str, detail: str) -> None:
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
        # Awaiting the acknowledgement before the offset commit: a dead letter is never lost.
        await (await self._producer.send(topic, value=record.value, key=record.key, headers=headers))


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])


async def _raw_decoder(msg: Any) -> Any:
    """Hand the handler the raw bytes: JSON and schema checks are ours, so failures can be dead-lettered."""
    return msg.body


Gate = Callable[[bytes], Awaitable[bool]]


def subscribe(
    broker: KafkaBroker,
    processor: EventProcessor,
    *,
    topics: list[str],
    kafka: KafkaSettings,
    workers: int = 1,
    gate: Gate | None = None,
    max_poll_interval_ms: int = 300_000,
) -> None:
    """Register a FastStream subscriber that runs ``processor`` and commits only after it returns.

    ``workers`` > 1 runs that many consumers of the group in this process: partitions in parallel,
    each partition in order, each consumer committing only its own partitions. ``gate(body)`` runs
    before processing (e.g. a retry level waiting until a job is due); when it answers False the
    record is left uncommitted and is consumed again after a restart.
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
        title=f"{processor.consumer}:{','.join(topics)}",
    )
    async def on_record(body: bytes, message: KafkaMessage) -> None:
        if gate is not None and not await gate(body):
            return
        await processor.process(message.raw_message)  # type: ignore[arg-type]
        await message.ack()
