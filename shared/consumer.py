"""The idempotent consumer: explicit group, commit after durable side effects, dead letters, no skips.

Contract of :class:`EventProcessor.process`, the heart of every Kafka handler in Bondgenoot:

1. The record value is measured before it is parsed: larger than ``JsonBounds.max_bytes`` or nested
   deeper than ``JsonBounds.max_depth`` goes to ``<topic>.dlq`` (``too-large`` / ``too-deep``). Then it
   must be a JSON CloudEvent whose ``data`` fits the contract of its ``type``; otherwise the record
   goes to ``<topic>.dlq`` with the reason in its headers.
2. Event types, by what this service's contracts (``shared.events``) say about them:
   * a known type with a handler is applied (3.); a known type without one is none of our business;
   * a *newer version* than we know (``…v2`` of a ``…v1`` type, or a version above every version we
     know) is **parked** (:mod:`shared.parking`): kept in this consumer's table, counted in
     ``/healthz`` and listed at ``/ops/parked-events``, not dead-lettered and not counted towards
     the halt (5.). A producer may thus be upgraded before its consumers. Later events of the same
     subject park behind it, so a subject's events still apply in order once this consumer is
     upgraded and drains them (an operator can discard one that will never be understood);
   * a completely unknown type (a name no contract has, at a version we know) is a producer bug:
     it is dead-lettered (``unknown-event-type``). A new event type is rolled out consumers first.
3. The handler runs inside a :class:`UnitOfWork` together with an inbox row keyed by
   (consumer, event id). Both commit in one transaction, so a redelivered event finds its inbox row
   and changes nothing the second time. In-memory state follows only after that commit
   (:meth:`UnitOfWork.after_commit`).
4. A handler error is retried a bounded number of times, then dead-lettered. Infrastructure errors
   (the database is unreachable) are retried until it comes back: dead-lettering a healthy stream
   because our own database blinked would lose the stream.
5. Too many dead letters in a row means something is wrong with us, not with the data (a bad
   deploy): the consumer halts without committing, instead of dead-lettering the whole topic.
6. Only when ``process`` returned does :func:`shared.subscription.subscribe` commit the record's
   offset, and exactly that offset (``AckPolicy.MANUAL``; FastStream's default, ACK_FIRST, commits
   *before* processing and is at-most-once). Anything that escapes ``process`` — a dead-letter
   publish failing during a broker hiccup, a bug — seeks the partition back to the record and
   retries it with backoff: nothing behind it is processed or committed meanwhile (with MANUAL,
   FastStream only logs the exception and goes on, and the next acknowledgement would commit past
   the failed record). ``/healthz`` reports the stalled record.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Field, SQLModel

from shared import parking
from shared.dead_letters import DeadLetterPublisher
from shared.events.base import CloudEvent, EventData, NewerEventVersion, UnknownEventType, parse_data
from shared.json_bounds import JsonBounds, JsonBoundsExceeded, loads_bounded
from shared.outbox import AfterCommitFailed, UnitOfWork, UnitOfWorkFactory, utcnow
from shared.parking import Record
from shared.telemetry import context_from_headers, tracer

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, CloudEvent, Any], Awaitable[None]]

EVENT_ID_MAX = 64


class InboxRecord(SQLModel, table=True):
    """An event this consumer has already applied; its presence makes redelivery a no-op."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=EVENT_ID_MAX)
    event_type: str = Field(max_length=200)
    processed_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing handler is retried before its record is dead-lettered, and how long between."""

    max_attempts: int = 3
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)


STALL_RETRY = RetryPolicy(backoff_s=0.5, max_backoff_s=30.0)
"""Waits before a record whose processing escaped is tried again (attempts are not limited)."""


@dataclass(frozen=True)
class DlqLimit:
    """Halt the consumer after this many dead letters in a row."""

    max_consecutive: int = 50


@dataclass
class Stall:
    """A record that is being retried because its processing escaped; its partition waits for it."""

    topic: str
    partition: int
    offset: int
    attempts: int
    error: str
    since: datetime


class ConsumerHalted(RuntimeError):
    """The consumer stopped on purpose; its current record is not committed."""


class PoisonRecord(ValueError):
    """A record that can never be processed (bad JSON, bad schema); ``reason`` names why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead-lettered"
    BLOCKED = "blocked"
    """An earlier event of the same subject is parked: this one must wait behind it."""


# Lost connections only: a handler bug raising some other OSError must end in the DLQ, not loop forever.
_TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


# SQLSTATEs of a server that cannot serve us right now (class 08: connection exception; 57P01-57P03:
# shutting down, crashed, starting up; 53300: too many connections). asyncpg raises them as plain
# PostgresErrors, which SQLAlchemy wraps as a bare DBAPIError: without this a restarting database
# sent healthy records to the DLQ (found by the fault suite's pg-restart).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def _sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a driver error, wherever it sits in the chain (SQLAlchemy's ``orig``, ``__cause__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        current = getattr(current, "orig", None) or current.__cause__
    return ""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, _TRANSIENT_DB_ERRORS):
        return True
    return _sqlstate(exc).startswith(_TRANSIENT_SQLSTATE_PREFIXES)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says our own infrastructure is away (wait for it), not that the record is bad."""
    return _is_transient(exc)


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
        bounds: JsonBounds = JsonBounds(),
        on_halt: Callable[[str], None] | None = None,
        after_side_effects: Callable[[CloudEvent], Awaitable[None]] | None = None,
        serialize: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        self.consumer = consumer
        self._uow = uow_factory
        self._handlers = dict(handlers)
        self._dead_letters = dead_letters
        self._retry = retry
        self._dlq_limit = dlq_limit
        self.bounds = bounds
        self.stall_retry = STALL_RETRY
        self._on_halt = on_halt
        # A test hook: runs after the side effects are durable and before the offset commit.
        self._after_side_effects = after_side_effects
        # Each unit of work runs inside ``serialize()`` when given: consumers of one process that share
        # in-memory state (matching's index) take turns, so none reads it half-way through another's change.
        self._serialize = serialize
        self._tracer = tracer("bondgenoot.consumer")
        self.consecutive_dead_letters = 0
        self.halted: str | None = None
        self.processed = 0
        self.duplicates = 0
        self.parked = 0
        self.dead_lettered = 0
        self.stalls: dict[tuple[str, int], Stall] = {}

    # -- one record -------------------------------------------------------------------------------

    async def process(self, record: Record) -> None:
        """Process one record durably; return when its offset may be committed."""
        if self.halted:
            raise ConsumerHalted(self.halted)
        with self._span(record) as span:
            await self._handle(record, span, from_park=False)

    async def _handle(self, record: Record, span: trace.Span, *, from_park: bool) -> Outcome | None:
        """Decode, then apply, park or dead-letter one record; None when it is (still) of a newer version.

        ``from_park``: the record is a parked one being drained, oldest first, so nothing of its
        subject waits ahead of it, and if its version is still unknown it simply stays parked.
        """
        try:
            ce = self._envelope(record)
        except PoisonRecord as poison:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(poison)))
            await self._dead_letter(record, poison.reason, poison.detail)
            return Outcome.DEAD_LETTERED
        span.set_attribute("messaging.message.id", ce.id)
        span.set_attribute("cloudevents.event_type", ce.type)
        try:
            data = self._data(ce)
        except NewerEventVersion as newer:
            if not from_park:
                await self._park(record, ce, parking.REASON_NEWER_VERSION, str(newer))
            return None
        except PoisonRecord as poison:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(poison)))
            await self._dead_letter(record, poison.reason, poison.detail)
            return Outcome.DEAD_LETTERED
        handler = self._handlers.get(ce.type)
        if handler is None:
            # A known event type this consumer has no interest in: nothing to do.
            self.consecutive_dead_letters = 0
            return Outcome.APPLIED
        outcome = await self._apply_with_retries(record, ce, data, handler, span, check_parked=not from_park)
        # Drain what waits ahead of it first: if this consumer now knows those types, they apply.
        if outcome is Outcome.BLOCKED and await self.drain_subject(record.topic, ce.subject):
            outcome = await self._apply_with_retries(record, ce, data, handler, span, check_parked=True)
        if outcome is Outcome.BLOCKED:
            await self._park(record, ce, parking.REASON_BEHIND_PARKED, "an earlier event of this subject is parked")
        return outcome

    def _span(self, record: Record, *, parked: bool = False) -> Any:
        return self._tracer.start_as_current_span(
            f"{record.topic} process",
            context=context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.source.name": record.topic,
                "messaging.consumer.group.name": self.consumer,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
                "bondgenoot.parked": parked,
            },
        )

    def _envelope(self, record: Record) -> CloudEvent:
        return decode_envelope(record, self.bounds)

    def _data(self, ce: CloudEvent) -> EventData:
        return decode_data(ce)

    async def _apply_with_retries(
        self,
        record: Record,
        ce: CloudEvent,
        data: EventData,
        handler: Handler,
        span: trace.Span,
        *,
        check_parked: bool,
    ) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await self._apply_once(record, ce, data, handler, check_parked=check_parked)
            except AfterCommitFailed as exc:
                # Committed, but in-memory state missed the change: only a restart rebuilds it.
                self._halt(f"{self.consumer}: {exc}")
                raise ConsumerHalted(self.halted or "") from exc
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
                return Outcome.DEAD_LETTERED
            break
        if outcome is Outcome.BLOCKED:
            return outcome
        self.consecutive_dead_letters = 0
        if outcome is Outcome.APPLIED:
            self.processed += 1
        else:
            self.duplicates += 1
            span.set_attribute("bondgenoot.duplicate", True)
        if self._after_side_effects is not None:
            await self._after_side_effects(ce)
        return outcome

    async def _apply_once(
        self, record: Record, ce: CloudEvent, data: EventData, handler: Handler, *, check_parked: bool
    ) -> Outcome:
        """Apply the event in one transaction with its inbox row (unless its subject waits behind a parked one)."""
        async with self._serialize() if self._serialize is not None else contextlib.nullcontext(), self._uow() as uow:
            if check_parked and await parking.subject_has_parked(
                uow.session, consumer=self.consumer, topic=record.topic, subject=ce.subject
            ):
                return Outcome.BLOCKED
            uow.session.add(InboxRecord(consumer=self.consumer, event_id=ce.id, event_type=ce.type))
            try:
                # Insert first, then act: a concurrent duplicate fails here instead of racing a check.
                await uow.session.flush()
            except IntegrityError:
                return Outcome.DUPLICATE
            await handler(uow, ce, data)
            await uow.commit()
        return Outcome.APPLIED

    # -- dead letters, parking, halting -------------------------------------------------------------

    async def _dead_letter(self, record: Record, reason: str, detail: str) -> None:
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
        # Counted once it is really in the DLQ: a publish that failed and is retried counts once.
        self.dead_lettered += 1
        self.consecutive_dead_letters += 1
        if self.consecutive_dead_letters >= self._dlq_limit.max_consecutive:
            self._halt(
                f"{self.consumer} dead-lettered {self.consecutive_dead_letters} records in a row; "
                "halting instead of draining the topic into its DLQ"
            )

    def _halt(self, reason: str) -> None:
        self.halted = reason
        log.critical(reason)
        if self._on_halt is not None:
            self._on_halt(reason)

    async def _park(self, record: Record, ce: CloudEvent, reason: str, detail: str) -> None:
        """Keep the record in this consumer's park; a redelivered record is parked once."""
        row = parking.parked_event(
            record, consumer=self.consumer, event_id=ce.id, event_type=ce.type, subject=ce.subject, reason=reason
        )
        async with self._uow() as uow:
            uow.session.add(row)
            try:
                await uow.session.flush()
            except IntegrityError:
                return
            await uow.commit()
        self.parked += 1
        log.warning(
            "%s: parked %s %s[%d]@%d of subject %r (%s): %s",
            self.consumer,
            ce.type,
            record.topic,
            record.partition,
            record.offset,
            ce.subject[:200],
            reason,
            detail,
        )

    async def drain_subject(self, topic: str, subject: str) -> bool:
        """Process this subject's parked events in order; False when one is still of an unknown version."""
        db = self._uow.db
        while (row := await parking.first_parked(db, consumer=self.consumer, topic=topic, subject=subject)) is not None:
            if self.halted:
                raise ConsumerHalted(self.halted)
            record = row.record()
            with self._span(record, parked=True) as span:
                outcome = await self._handle(record, span, from_park=True)
            if outcome is None:
                return False
            # Processed, a duplicate or dead-lettered: it no longer waits. (A crash before this line
            # processes it again, which the inbox makes harmless.)
            await parking.unpark(self._uow.db, row.id or 0)
            log.info("%s: unparked %s %s@%d (%s)", self.consumer, row.event_type, topic, row.offset, outcome.value)
        return True

    async def discard_parked(self, parked_id: int, *, reason: str) -> bool:
        """Dead-letter a parked event an operator gave up on (say its producer was rolled back).

        The events of its subject that waited behind it then apply, unless another event of a newer
        version still waits ahead of them; returns whether the subject is free again. Not counted
        towards the dead-letter halt: an operator decided, the stream did not fail.
        """
        row = await parking.get_parked(self._uow.db, parked_id)
        if row.consumer != self.consumer:
            raise parking.ParkedNotFound(parked_id)
        record = row.record()
        log.warning("%s: discarding parked %s %s@%d: %s", self.consumer, row.event_type, row.topic, row.offset, reason)
        await self._dead_letters.publish(record, consumer=self.consumer, reason="discarded-from-park", detail=reason)
        await parking.unpark(self._uow.db, parked_id)
        return await self.drain_subject(row.topic, row.subject)

    async def drain_parked(self) -> int:
        """Process every parked event this consumer now understands; return how many subjects still wait."""
        waiting = 0
        for topic, subject in await parking.parked_subjects(self._uow.db, consumer=self.consumer):
            if not await self.drain_subject(topic, subject):
                waiting += 1
        if waiting:
            log.warning("%s: %d subjects still wait behind events of a newer version", self.consumer, waiting)
        return waiting

    # -- stalls: processing that escaped ----------------------------------------------------------

    def stalled_on(self, record: Record, exc: BaseException) -> float:
        """Note that processing ``record`` escaped; return how long to wait before it is tried again."""
        key = (record.topic, record.partition)
        previous = self.stalls.get(key)
        attempts = previous.attempts + 1 if previous is not None and previous.offset == record.offset else 1
        self.stalls[key] = Stall(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=f"{type(exc).__name__}: {exc}"[:500],
            since=previous.since if previous is not None and previous.offset == record.offset else datetime.now(UTC),
        )
        delay = self.stall_retry.delay(min(attempts, 10))
        log.error(
            "%s: processing %s[%d]@%d failed outside its handler (attempt %d); not committed, retrying it in %.1fs: %r",
            self.consumer,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            delay,
            exc,
            exc_info=attempts == 1,
        )
        return delay

    def done_with(self, record: Record) -> None:
        """The record was processed: a stall on its partition is over."""
        stall = self.stalls.pop((record.topic, record.partition), None)
        if stall is not None:
            log.warning(
                "%s: %s[%d]@%d processed after %d failed attempts",
                self.consumer,
                stall.topic,
                stall.partition,
                stall.offset,
                stall.attempts,
            )


def decode_envelope(record: Record, bounds: JsonBounds) -> CloudEvent:
    """The record's CloudEvent, parsed within ``bounds``; PoisonRecord when there is none."""
    if record.value is None:
        raise PoisonRecord("invalid-json", "record has no value")
    try:
        raw = loads_bounded(record.value, bounds)
        if not isinstance(raw, dict):
            raise PoisonRecord("invalid-json", "record value is JSON but not an object")
        ce = CloudEvent.model_validate(raw)
    except PoisonRecord:
        raise
    except JsonBoundsExceeded as exc:
        raise PoisonRecord(exc.reason, exc.detail) from exc
    except ValidationError as exc:
        raise PoisonRecord("invalid-envelope", _brief(exc)) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonRecord("invalid-json", str(exc)) from exc
    except Exception as exc:  # decoding is a pure function of the record: it will fail again, every time
        raise PoisonRecord("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if len(ce.id) > EVENT_ID_MAX:
        raise PoisonRecord("invalid-envelope", f"id: longer than {EVENT_ID_MAX} characters")
    return ce


def decode_data(ce: CloudEvent) -> EventData:
    """The event's data checked against its contract; NewerEventVersion passes through."""
    try:
        return parse_data(ce)
    except NewerEventVersion:
        raise
    except UnknownEventType as exc:
        raise PoisonRecord("unknown-event-type", str(exc)) from exc
    except ValidationError as exc:
        raise PoisonRecord("schema-violation", _brief(exc)) from exc
    except Exception as exc:  # as in decode_envelope: the same data fails the same way every time
        raise PoisonRecord("undecodable", f"{type(exc).__name__}: {exc}") from exc


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
