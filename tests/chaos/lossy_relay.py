"""A deliberately lossy outbox relay: the checker's own test of its **lost** rule (``tests/chaos/test_chaos.py``).

It marks outbox rows published *before* the broker has them, and sends them a moment later in the
background, fire-and-forget — the classic relay bug (as lossy as a producer with ``acks=0``). A
SIGKILL in between loses every row marked but not yet sent, although each of their writes was
acknowledged: the checker must report them lost. Only the relay differs from the real service.

    CHAOS_SERVICE=registry python -m tests.chaos.lossy_relay
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os

from sqlalchemy import update
from sqlmodel import col, select

import shared.runtime
from shared.http import serve
from shared.outbox import CONTENT_TYPE, OutboxRecord, OutboxRelay, utcnow

log = logging.getLogger(__name__)

# Long enough that a kill finds marked, unsent rows even when back-pressure slows the load.
SEND_DELAY_S = 30.0
_in_flight: set[asyncio.Task[None]] = set()


class MarksFirstRelay(OutboxRelay):
    """``OutboxRelay`` with the bug: rows are marked published first, sent later, never confirmed."""

    async def publish_pending(self) -> int:
        async with self._db.sessions() as session:
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
            await session.exec(
                update(OutboxRecord).where(col(OutboxRecord.id).in_([r.id for r in rows])).values(published_at=utcnow())
            )  # type: ignore[call-overload]
            await session.commit()  # the bug: "published" before the broker has a single byte
        log.warning("LOSSY relay marked %d row(s) published: %s", len(rows), [r.event_id for r in rows])
        task = asyncio.create_task(self._send_later([(r.topic, r.key, r.payload, r.event_id) for r in rows]))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)
        self.published_total += len(rows)
        return len(rows)

    async def _send_later(self, rows: list[tuple[str, str, str, str]]) -> None:
        await asyncio.sleep(SEND_DELAY_S)
        producer = await self._started_producer()
        for topic, key, payload, event_id in rows:
            # Fire and forget, in order: the futures are not awaited (what acks=0 amounts to).
            await producer.send(
                self._kafka.topic(topic),
                value=payload.encode(),
                key=key.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
            log.warning("LOSSY relay sent %s", event_id)


if __name__ == "__main__":
    service = os.environ["CHAOS_SERVICE"]
    shared.runtime.OutboxRelay = MarksFirstRelay  # type: ignore[misc]
    log.warning("LOSSY %s variant: the outbox relay marks rows published before the broker has them", service)
    serve(*importlib.import_module(f"services.{service}.bootstrap").build())
