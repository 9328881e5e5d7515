"""Which targets a matching replica ranks: those in the projects.v1 / calls.v1 partitions its group gave it.

The replicas form one consumer group (``matching``) on the target topics, so Kafka decides — no
coordinator of our own. A target's events all go to one partition (the record key is its id), so
each open target has exactly one owner: the replica holding its partition. ``owns(type, id)``
answers with Kafka's default partitioner over the partition counts of the topics.

Hand-over (aiokafka's eager rebalance: every member's ``on_partitions_revoked`` runs before any
member's ``on_partitions_assigned``):
1. *Revoked*: the replica waits for the ranking in flight (the engine's lock) and then owns nothing,
   so after this it writes no ranking of those targets.
2. *Assigned*: targets wait (``engine.caught_up`` is cleared) while the replica reads companies.v1 up
   to the log end it sees now — everything its predecessor could have ranked from — and then
   re-ranks every open target it owns from the shared matching database, publishing those whose
   placings differ from the stored ones (*catch-up*). Company changes it reads meanwhile rescore the
   targets it owns as usual; a ranking from an index older than the stored one is dropped (``domain``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from services.matching import domain
from services.matching.engine import MatchingEngine
from services.matching.index_feed import IndexFeed
from shared.consumer import is_transient
from shared.events import calls, projects
from shared.kafka import partition_counts, partition_of
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

TARGET_TOPICS = {"project": projects.TOPIC, "call": calls.TOPIC}
RETRY_MAX_S = 10.0
REFRESH_ATTEMPTS = 3


class TargetOwnership(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """The rebalance listener of the targets consumer; ``owns`` is what the companies feed asks."""

    def __init__(self, *, engine: MatchingEngine, feed: IndexFeed, runtime: ServiceRuntime) -> None:
        self._engine = engine
        self._feed = feed
        self._runtime = runtime
        self._kafka = runtime.settings.kafka
        self._topics = {kind: self._kafka.topic(t) for kind, t in TARGET_TOPICS.items()}
        self._assigned: frozenset[tuple[str, int]] = frozenset()
        self._counts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.rebalances = 0
        self.last_catch_up: dict[str, Any] = {}

    def owns(self, target_type: str, target_id: str) -> bool:
        topic = self._topics.get(target_type)
        count = self._counts.get(topic or "")
        return count is not None and (topic, partition_of(target_id, count)) in self._assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        async with self._engine.lock:  # the ranking in flight finishes first
            self._assigned = frozenset()
            self._counts = {}
        log.info("matching: partitions revoked: %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.rebalances += 1
        self._engine.caught_up.clear()
        partitions = frozenset((tp.topic, tp.partition) for tp in assigned)
        log.info("matching: partitions assigned: %s", _names(assigned))
        # Not awaited here: the rebalance must not wait for the index to catch up.
        self._task = asyncio.create_task(self._take_over(partitions), name="matching-take-over")

    async def _take_over(self, partitions: frozenset[tuple[str, int]]) -> None:
        started = time.perf_counter()
        counts = await self._partition_counts()
        self._assigned, self._counts = partitions, counts
        mark = await self._feed.end_offsets()
        await self._feed.reach(mark)
        self._engine.caught_up.set()
        index_ready = time.perf_counter()
        async with self._runtime.uow() as uow:
            owned = await domain.owned_open_targets(uow, self._engine)
        republished = failed = 0
        for target_type, target_id in owned:
            try:
                republished += await self._refresh(target_type, target_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                failed += 1
                log.exception("matching: catch-up of %s %s failed; it keeps its stored ranking", target_type, target_id)
        self.last_catch_up = {
            "partitions": len(partitions),
            "index_wait_s": round(index_ready - started, 3),
            "targets": len(owned),
            "republished": republished,
            "failed": failed,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("matching: took over %s", self.last_catch_up)

    async def _refresh(self, target_type: str, target_id: str) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._engine.lock:
                    if not self.owns(target_type, target_id):
                        return False
                    async with self._runtime.uow() as uow:
                        changed = await domain.refresh_target(
                            uow, self._engine, target_type=target_type, target_id=target_id
                        )
                        await uow.commit()
                return changed
            except Exception as exc:
                if not is_transient(exc) and attempt >= REFRESH_ATTEMPTS:
                    raise
                await asyncio.sleep(min(RETRY_MAX_S, 0.2 * 2**attempt))

    async def _partition_counts(self) -> dict[str, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await partition_counts(self._kafka, list(self._topics.values()))
            except Exception as exc:  # the broker is away: ownership stays unknown until it answers
                delay = min(RETRY_MAX_S, 0.5 * attempt)
                log.warning("matching: partition counts unavailable (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    def describe(self) -> dict[str, Any]:
        """For ``/healthz``: the partitions this replica ranks the targets of, and its last take-over."""
        return {
            "partitions": sorted(f"{t}[{p}]" for t, p in self._assigned),
            "caught_up": self._engine.caught_up.is_set(),
            "rebalances": self.rebalances,
            "last_take_over": self.last_catch_up,
        }


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"
