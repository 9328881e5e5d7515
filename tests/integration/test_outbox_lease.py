"""The outbox relay's lock is a lease: a frozen holder stalls the other replicas' relays only briefly.

Seen in the fault suite: a SIGSTOPped alerts replica kept its transaction (and the relay's advisory
lock) open, so the other replica published nothing until it was resumed. Here the holder is frozen
the way PostgreSQL sees a stopped or partitioned process: its session sits idle inside the transaction
while the relay waits on a broker that never answers (a socket that accepts and stays silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from shared.db import Database
from shared.events.projects import ProjectClosed
from shared.kafka import all_topics, ensure_topics
from shared.outbox import OUTBOX_TABLES, OutboxRelay, UnitOfWorkFactory
from shared.settings import KafkaSettings
from tests.infra import Databases, free_port, wait_for
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

LEASE_S = 2.0


@contextlib.asynccontextmanager
async def silent_broker() -> AsyncIterator[str]:
    """A bootstrap address that accepts connections and never answers: a relay there waits forever."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_a_frozen_relay_loses_the_lock_after_its_lease(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    db = Database(databases.create("outbox_lease"), tables=OUTBOX_TABLES)
    await db.create_tables()
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    uow = UnitOfWorkFactory(db, source="projects")
    async with uow() as u:
        event_id = u.emit(ProjectClosed(project_id="p1"), subject="p1").id
        await u.commit()

    async with silent_broker() as nowhere:
        # Waits two minutes for the silent broker: far beyond the lease, as a stopped process would.
        frozen_kafka = kafka_settings.model_copy(update={"bootstrap_servers": nowhere, "request_timeout_ms": 120_000})
        frozen = OutboxRelay(db, frozen_kafka, service="projects", lock_lease_s=LEASE_S)
        healthy = OutboxRelay(db, kafka_settings, service="projects", lock_lease_s=LEASE_S)
        holder = asyncio.create_task(frozen.publish_pending())
        try:
            # The frozen relay holds the lock: the healthy one publishes nothing meanwhile ...
            await wait_for(lambda: holder.done() or _locked(db), timeout=20, what="the frozen relay holds the lock")
            assert not holder.done()
            assert await healthy.publish_pending() == 0
            # ... until the lease runs out (well before the frozen relay's own two-minute wait).
            published = await wait_for(healthy.publish_pending, timeout=8 * LEASE_S, interval=0.2, what="lease expiry")
            assert published == 1
            assert not holder.done(), "the frozen relay is still waiting: the server, not the holder, ended it"
        finally:
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await holder
            await frozen.close()
            await healthy.close()

    records = await read_topic(kafka_settings, "projects.v1", expect=1)
    assert [json.loads(r.value)["id"] for r in records] == [event_id]
    await db.dispose()


async def _locked(db: Database) -> bool:
    """Whether some session holds the relay's advisory lock (pg_locks, from another connection)."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :id AND granted"),
            {"id": OutboxRelay.ADVISORY_LOCK_ID},
        )
        return bool(rows.scalar_one())
