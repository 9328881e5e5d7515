"""A service's runtime: database, outbox relay, Kafka consumers and HTTP API in one process.

Each service's composition root (``services/<name>/bootstrap.py``) builds one :class:`ServiceRuntime`,
registers its consumers on it and hands it to :func:`create_app`. The HTTP API starts serving at
once; Kafka is connected in the background, so writes keep landing in the outbox while the broker is
away, and ``/healthz`` says 503 until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any

from aiokafka import ConsumerRebalanceListener
from faststream.kafka import KafkaBroker
from sqlmodel import SQLModel

from shared.consumer import DlqLimit, EventProcessor, Handler, InboxRecord, RetryPolicy
from shared.db import Database
from shared.dead_letters import DeadLetterPublisher
from shared.events.base import CloudEvent
from shared.json_bounds import JsonBounds
from shared.kafka import all_topics, ensure_topics, kafka_security
from shared.outbox import OUTBOX_TABLES, OutboxRelay, UnitOfWorkFactory
from shared.parking import ParkedEvent, parked_counts
from shared.settings import ServiceSettings
from shared.subscription import Gate, subscribe
from shared.telemetry import configure_tracing

log = logging.getLogger(__name__)

BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class ServiceRuntime:
    """Everything one service process runs besides its HTTP routes."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        tables: Sequence[type[SQLModel]],
        extra_topics: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        configure_tracing(name, settings.telemetry)
        self.db = Database(settings.database_url, tables=[*OUTBOX_TABLES, InboxRecord, ParkedEvent, *tables])
        self.uow = UnitOfWorkFactory(self.db, source=name)
        self.relay = OutboxRelay(
            self.db,
            settings.kafka,
            service=name,
            poll_interval_s=settings.outbox_poll_interval_s,
            lock_lease_s=settings.outbox_lock_lease_s,
        )
        self.uow.on_commit(self.relay.wake)
        self.broker = KafkaBroker(
            settings.kafka.servers,
            client_id=f"bondgenoot-{name}",
            request_timeout_ms=settings.kafka.request_timeout_ms,
            acks="all",
            enable_idempotence=True,
            allow_auto_create_topics=False,
            # Per-record "Received/Processed" lines at DEBUG: our own logs say what matters.
            log_level=logging.DEBUG,
            security=kafka_security(settings.kafka),
        )
        self.dead_letters = DeadLetterPublisher(settings.kafka, client_id=f"{name}-dlq")
        self._extra_topics = extra_topics
        self.processors: list[EventProcessor] = []
        self.consumed_topics: list[str] = []
        self._background: list[BackgroundTask] = []
        self._startup_hooks: list[Callable[[Database], Awaitable[object]]] = []
        self._reports: list[tuple[str, Callable[[], Mapping[str, Any]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.stop_event = asyncio.Event()
        self.kafka_ready = asyncio.Event()
        self.halt_reason: str | None = None
        self.on_halt: Callable[[str], None] | None = None

    def consumer(
        self,
        group: str,
        *,
        topics: list[str],
        handlers: Mapping[str, Handler],
        after_side_effects: Callable[[CloudEvent], Awaitable[None]] | None = None,
        workers: int = 1,
        gate: Gate | None = None,
        max_poll_interval_ms: int = 300_000,
        listener: ConsumerRebalanceListener | None = None,
        serialize: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> EventProcessor:
        """Register an idempotent consumer with an explicit group id (see shared.consumer and shared.subscription)."""
        processor = EventProcessor(
            consumer=group,
            uow_factory=self.uow,
            handlers=handlers,
            dead_letters=self.dead_letters,
            retry=RetryPolicy(max_attempts=self.settings.consumer_max_attempts),
            dlq_limit=DlqLimit(max_consecutive=self.settings.consumer_dlq_limit),
            bounds=JsonBounds(
                max_bytes=self.settings.consumer_max_record_bytes, max_depth=self.settings.consumer_max_json_depth
            ),
            on_halt=self._halt,
            after_side_effects=after_side_effects,
            serialize=serialize,
        )
        subscribe(
            self.broker,
            processor,
            topics=topics,
            kafka=self.settings.kafka,
            workers=workers,
            gate=gate,
            max_poll_interval_ms=max_poll_interval_ms,
            listener=listener,
        )
        self.processors.append(processor)
        self.consumed_topics.extend(t for t in topics if t not in self.consumed_topics)
        return processor

    def before_consuming(self, hook: Callable[[Database], Awaitable[object]]) -> None:
        """Run ``hook(db)`` after the tables exist and before any record is consumed."""
        self._startup_hooks.append(hook)

    def report(self, name: str, describe: Callable[[], Mapping[str, Any]]) -> None:
        """Add ``describe()`` to ``/healthz`` under ``name`` (information about the service's own work)."""
        self._reports.append((name, describe))

    def background(self, task: BackgroundTask) -> None:
        """Run ``task(stop_event)`` for the life of the service (e.g. the call watcher's poller)."""
        self._background.append(task)

    def halt(self, reason: str) -> None:
        """Mark the service halted (``/healthz`` 503): a part of it stopped on purpose and said why."""
        self._halt(reason)

    def _halt(self, reason: str) -> None:
        self.halt_reason = reason
        if self.on_halt is not None:
            self.on_halt(reason)

    async def start(self) -> None:
        await self.db.create_tables()
        for hook in self._startup_hooks:
            await hook(self.db)
        self._tasks.append(asyncio.create_task(self.relay.run(self.stop_event), name=f"{self.name}-relay"))
        self._tasks.append(asyncio.create_task(self._connect_kafka(), name=f"{self.name}-kafka"))
        for task in self._background:
            self._tasks.append(asyncio.create_task(task(self.stop_event), name=f"{self.name}-bg"))

    async def _connect_kafka(self) -> None:
        """Create topics and start consumers, retrying until the broker answers."""
        attempt = 0
        while not self.stop_event.is_set():
            attempt += 1
            try:
                await ensure_topics(self.settings.kafka, all_topics(self.settings.kafka, self._extra_topics))
                await self.dead_letters.start()
                # Parked events this (possibly upgraded) consumer now understands go before new records.
                for processor in self.processors:
                    await processor.drain_parked()
                await self.broker.start()
            except Exception as exc:  # broker not there yet: keep serving HTTP, try again
                delay = min(10.0, 0.5 * attempt)
                log.warning("%s: Kafka not reachable (%r); retrying in %.1fs", self.name, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), delay)
                continue
            self.kafka_ready.set()
            log.info("%s: connected to Kafka at %s", self.name, self.settings.kafka.bootstrap_servers)
            return

    async def stop(self) -> None:
        self.stop_event.set()
        # Stop consuming first so no record is half-processed when the database goes away.
        await self.broker.stop()
        await self.dead_letters.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=15)
        await self.db.dispose()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the database and Kafka answer, plus the outbox backlog.

        ``status`` is ``ok``, ``degraded`` (serving, but something needs an operator: parked outbox
        rows) or ``unavailable`` (database or Kafka down, a halted or stalled consumer; the HTTP
        status is then 503). Newer-version events parked by a consumer are counted per consumer but
        do not degrade: they are expected while a producer is upgraded before its consumers.
        """
        checks: dict[str, Any] = {"service": self.name, "status": "ok"}
        ok = True
        parked: dict[str, int] = {}
        outbox_parked = 0
        try:
            await asyncio.wait_for(self.db.ping(), 3)
            checks["database"] = "ok"
            checks["outbox_pending"] = await self.relay.pending_count()
            checks["outbox_oldest_unpublished_age_s"] = await self.relay.oldest_unpublished_age_s()
            # Rows the broker refused for good (docs/limits.md): kept, and an operator must act.
            checks["outbox_parked"] = outbox_parked = await self.relay.parked_count()
            # Newer-version events each consumer keeps until its upgrade (shared/parking.py).
            parked = await parked_counts(self.db)
        except Exception as exc:  # reported, not raised: this is the health endpoint
            ok = False
            checks["database"] = f"unreachable: {type(exc).__name__}"
        kafka_ok = self.kafka_ready.is_set() and await self._kafka_ping()
        checks["kafka"] = "ok" if kafka_ok else "unreachable"
        ok = ok and kafka_ok
        if self.halt_reason:
            ok = False
            checks["halted"] = self.halt_reason
        stalled = False
        checks["consumers"] = {}
        for p in self.processors:
            stalls = [
                {**asdict(s), "since": s.since.isoformat()} for s in sorted(p.stalls.values(), key=lambda s: s.since)
            ]
            stalled = stalled or bool(stalls)
            checks["consumers"][p.consumer] = {
                "processed": p.processed,
                "duplicates": p.duplicates,
                "dead_lettered": p.dead_lettered,
                "halted": p.halted,
                # Waiting for this consumer's upgrade: expected during a rolling upgrade, so not unhealthy.
                "parked": parked.get(p.consumer, 0),
                # A record retried because its processing escaped: its partition is not moving.
                "stalled": stalls,
            }
        for name, describe in self._reports:
            checks[name] = dict(describe())
        healthy = ok and not stalled
        checks["status"] = "unavailable" if not healthy else "degraded" if outbox_parked else "ok"
        return healthy, checks

    async def _kafka_ping(self) -> bool:
        try:
            return bool(await self.broker.ping(timeout=2.0))
        except Exception:  # a failed ping is the answer, not an error
            return False

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
