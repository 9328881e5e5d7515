"""The companies feed: every matching replica reads *all* of companies.v1 into its own index.

Like a Kafka Streams GlobalKTable: the consumer has no group and commits nothing. It is assigned
every partition of companies.v1 and reads it from the beginning at start — the topic is compacted
by company id, so the log keeps the newest event of every company however old — and then follows
it. Until it has read up to the end offsets it saw at start, records go straight into the index
(*building*: nothing ranks yet). After that each record is one unit of work under the engine's
lock: the open targets this replica owns are re-scored against the change, the rankings that moved
are published, and the index takes the change once that transaction has committed.

What the group-less consumer cannot rely on, it does itself:
- **Dead letters once.** Every replica meets a poison record, at every start. The first one to
  record it in the shared matching database (the inbox table, consumer ``matching.index``, id
  ``dlq:<partition>:<offset>``) sends it to ``companies.v1.dlq``; the others skip it.
- **Newer versions wait in memory.** A ``company.*.v2`` this code does not know holds its company
  (that event and every later one of the same company) out of the index; the log keeps them, and an
  upgraded replica reads them at its next start. ``/healthz`` counts the held companies.
- **Halting.** Too many dead letters in a row halts the feed and marks the service unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.exc import IntegrityError

from services.matching import domain
from services.matching.engine import CompanyChange, MatchingEngine, not_older
from shared.consumer import (
    ConsumerHalted,
    InboxRecord,
    PoisonRecord,
    decode_data,
    decode_envelope,
    is_transient,
)
from shared.events.base import NewerEventVersion
from shared.events.companies import TOPIC, CompanyRegistered, CompanyRemoved, CompanyUpdated
from shared.json_bounds import JsonBounds
from shared.kafka import partition_counts
from shared.outbox import AfterCommitFailed
from shared.parking import Record
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

CONSUMER = "matching.index"
BATCH = 1000
YIELD_EVERY_S = 0.05
RECONNECT_MAX_S = 10.0


class IndexFeed:
    """Reads companies.v1 whole into the engine's index and keeps following it (see the module docstring)."""

    def __init__(self, *, engine: MatchingEngine, runtime: ServiceRuntime) -> None:
        self._engine = engine
        self._runtime = runtime
        settings = runtime.settings
        self._kafka = settings.kafka
        self.topic = settings.kafka.topic(TOPIC)
        self._bounds = JsonBounds(
            max_bytes=settings.consumer_max_record_bytes, max_depth=settings.consumer_max_json_depth
        )
        self._max_attempts = settings.consumer_max_attempts
        self._dlq_limit = settings.consumer_dlq_limit
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._started = asyncio.Event()
        self._moved = asyncio.Event()
        self.built = asyncio.Event()
        self.build_seconds: float | None = None
        self.records = 0
        self.dead_lettered = 0
        self.consecutive_dead_letters = 0
        self.held: dict[str, int] = {}
        self.halted: str | None = None
        self._yielded = time.perf_counter()

    # -- what other parts of the replica wait for ------------------------------------------------

    async def end_offsets(self) -> dict[int, int]:
        """The log end of every companies.v1 partition, now."""
        while True:
            await self._started.wait()
            consumer = self._consumer
            if consumer is not None:
                ends = await consumer.end_offsets(self._partitions)
                return {tp.partition: offset for tp, offset in ends.items()}

    async def reach(self, mark: Mapping[int, int]) -> None:
        """Return once the index has read companies.v1 up to ``mark`` (and the first build is done)."""
        while not (self.built.is_set() and not_older(self._engine.position, mark)):
            await self._moved.wait()

    def _pulse(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and follow companies.v1 until ``stop``; reconnect (from where the index stands) on errors."""
        await _first(stop, self._runtime.kafka_ready)  # topics exist and the dead-letter producer runs
        attempt = 0
        while not stop.is_set() and self.halted is None:
            try:
                await self._follow(stop)
                attempt = 0
            except ConsumerHalted:
                return
            except Exception as exc:  # Kafka trouble or a bug: never carry on past a record, start again at it
                attempt += 1
                delay = min(RECONNECT_MAX_S, 0.5 * attempt)
                log.error("%s: feed failed (%r); resuming at %s in %.1fs", CONSUMER, exc, self._engine.position, delay)
                await _first(stop, timeout=delay)

    async def _follow(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            client_id=f"bondgenoot-{CONSUMER}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self._kafka.request_timeout_ms,
            **self._kafka.client_security(),
        )
        await consumer.start()
        try:
            count = (await partition_counts(self._kafka, [self.topic]))[self.topic]
            self._partitions = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(self._partitions)
            for tp in self._partitions:
                consumer.seek(tp, self._engine.position.get(tp.partition, 0))
            build_mark: dict[int, int] = {}
            if not self.built.is_set():
                ends = await consumer.end_offsets(self._partitions)
                build_mark = {tp.partition: offset for tp, offset in ends.items()}
                started = time.perf_counter()
                log.info("%s: building the index from %s up to %s", CONSUMER, self.topic, build_mark)
            self._consumer = consumer
            self._started.set()
            while not stop.is_set():
                if not self.built.is_set() and not_older(self._engine.position, build_mark):
                    if self._engine.profiles:
                        # Fold the build into the main segment. Not when empty: the matcher would fix its
                        # BM25 length normaliser at the average length of no profile at all.
                        self._engine.matcher.compact()
                    self.build_seconds = time.perf_counter() - started
                    self.built.set()
                    log.info(
                        "%s: index built, %d companies from %d records in %.1fs",
                        CONSUMER,
                        len(self._engine.profiles),
                        self.records,
                        self.build_seconds,
                    )
                    self._pulse()
                batch = await consumer.getmany(*self._partitions, timeout_ms=500, max_records=BATCH)
                for records in batch.values():
                    for record in records:
                        await self._handle(record)
                        if time.perf_counter() - self._yielded > YIELD_EVERY_S:
                            # A build applies records without awaiting anything: let the HTTP API and the
                            # targets consumer's heartbeats run, or a long build looks like a dead replica.
                            await asyncio.sleep(0)
                            self._yielded = time.perf_counter()
                if batch:
                    self._pulse()
        finally:
            self._started.clear()
            self._consumer = None
            await consumer.stop()

    # -- one record ----------------------------------------------------------------------------

    async def _handle(self, record: Record) -> None:
        self.records += 1
        try:
            ce = decode_envelope(record, self._bounds)
        except PoisonRecord as poison:
            await self._dead_letter_once(record, poison.reason, poison.detail)
            return await self._apply(record, None)
        if ce.subject in self.held:
            self.held[ce.subject] += 1
            return await self._apply(record, None)
        try:
            data = decode_data(ce)
        except NewerEventVersion as newer:
            self.held[ce.subject] = 1
            log.warning("%s: holding company %r out of the index: %s", CONSUMER, ce.subject[:200], newer)
            return await self._apply(record, None)
        except PoisonRecord as poison:
            await self._dead_letter_once(record, poison.reason, poison.detail)
            return await self._apply(record, None)
        change: CompanyChange | None = None
        if isinstance(data, CompanyRegistered | CompanyUpdated):
            change = CompanyChange(data.company.id, domain.company_profile(data.company))
        elif isinstance(data, CompanyRemoved):
            change = CompanyChange(data.company_id, None)
        await self._apply(record, change)
        self.consecutive_dead_letters = 0

    async def _apply(self, record: Record, change: CompanyChange | None) -> None:
        """Apply the record's change (None: none) and move past it; while building, straight into the index."""
        if not self.built.is_set():
            self._engine.apply_now(change, partition=record.partition, next_offset=record.offset + 1)
            return
        if change is None:
            async with self._engine.lock:
                self._engine.apply_now(None, partition=record.partition, next_offset=record.offset + 1)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._engine.lock, self._runtime.uow() as uow:
                    await domain.company_changed(
                        uow, self._engine, change=change, partition=record.partition, next_offset=record.offset + 1
                    )
                    await uow.commit()
                return
            except AfterCommitFailed as exc:
                self._halt(f"{CONSUMER}: {exc}")
            except Exception as exc:
                if is_transient(exc):
                    log.warning("%s: database unavailable, retrying %s@%d: %r", CONSUMER, *record_at(record), exc)
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** min(attempt, 5)))
                    attempt = min(attempt, self._max_attempts - 1)
                    continue
                if attempt < self._max_attempts:
                    log.warning("%s: %s@%d failed (attempt %d): %r", CONSUMER, *record_at(record), attempt, exc)
                    await asyncio.sleep(0.2 * 2 ** (attempt - 1))
                    continue
                await self._dead_letter_once(record, "handler-failed", f"{type(exc).__name__}: {exc}")
                async with self._engine.lock:
                    self._engine.apply_now(None, partition=record.partition, next_offset=record.offset + 1)
                return

    async def _dead_letter_once(self, record: Record, reason: str, detail: str) -> None:
        """Send the record to the DLQ unless another replica (or an earlier start) already did."""
        async with self._runtime.uow() as uow:
            uow.session.add(
                InboxRecord(consumer=CONSUMER, event_id=f"dlq:{record.partition}:{record.offset}", event_type=reason)
            )
            try:
                await uow.session.flush()
            except IntegrityError:
                log.info("%s: %s@%d was dead-lettered before (%s)", CONSUMER, *record_at(record), reason)
                return
            log.error("%s: dead-lettering %s@%d (%s): %s", CONSUMER, *record_at(record), reason, detail)
            await self._runtime.dead_letters.publish(record, consumer=CONSUMER, reason=reason, detail=detail)
            await uow.commit()
        self.dead_lettered += 1
        self.consecutive_dead_letters += 1
        if self.consecutive_dead_letters >= self._dlq_limit:
            self._halt(
                f"{CONSUMER} dead-lettered {self.consecutive_dead_letters} records in a row; "
                "halting instead of draining companies.v1 into its DLQ"
            )

    def _halt(self, reason: str) -> None:
        self.halted = reason
        self._runtime.halt(reason)
        raise ConsumerHalted(reason)

    def describe(self) -> dict[str, Any]:
        """For ``/healthz``: how far the index has read, and what it holds back."""
        consumer = self._consumer
        lag = 0
        for tp in self._partitions:
            high = consumer.highwater(tp) if consumer is not None else None
            if high is not None:
                lag += max(0, high - self._engine.position.get(tp.partition, 0))
        return {
            "companies": len(self._engine.profiles),
            "built": self.built.is_set(),
            "build_seconds": None if self.build_seconds is None else round(self.build_seconds, 2),
            "records_read": self.records,
            "position": {str(p): o for p, o in sorted(self._engine.position.items())},
            "lag": lag,
            "held_companies": len(self.held),
            "dead_lettered": self.dead_lettered,
            "halted": self.halted,
        }


def record_at(record: Record) -> tuple[str, int]:
    return f"{record.topic}[{record.partition}]", record.offset


async def _first(stop: asyncio.Event, other: asyncio.Event | None = None, *, timeout: float | None = None) -> None:
    """Wait until ``stop`` or ``other`` is set (or ``timeout`` passes)."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
