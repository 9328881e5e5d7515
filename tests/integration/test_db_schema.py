"""Replicas of one service start at the same time on an empty database: every one of them must come up."""

from __future__ import annotations

import asyncio

import pytest

from shared.consumer import InboxRecord
from shared.db import Database
from shared.outbox import OutboxRecord
from tests.infra import Databases
from tests.integration.kafka_tools import Widget

pytestmark = pytest.mark.infra


async def test_concurrent_replicas_create_the_schema_once(databases: Databases) -> None:
    url = databases.create("schema")
    replicas = [Database(url, tables=[OutboxRecord, InboxRecord, Widget]) for _ in range(4)]
    try:
        # Without a lock, CREATE TABLE races end in "duplicate key ... pg_type_typname_nsp_index".
        await asyncio.gather(*(db.create_tables() for db in replicas))
        async with replicas[0].sessions() as session:
            session.add(Widget(id="w", count=1))
            await session.commit()
    finally:
        for db in replicas:
            await db.dispose()
