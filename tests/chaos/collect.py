"""Read what the checker judges from the real cluster, the alerts database and the sinks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.chaos.checker import AlertRow, DeliveryRow, Event, Observations, SubscriptionRow
from tests.chaos.platform import ChaosPlatform

log = logging.getLogger(__name__)

READ_TOPICS = ("companies.v1", "projects.v1", "calls.v1", "suggestions.v1", "alerts.v1")


async def partitions(consumer: AIOKafkaConsumer, topics: list[str] | set[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, from fresh cluster metadata.

    A consumer without a subscription has no metadata of its own: ``partitions_for_topic`` answers
    None, and every lag would silently read as 0.
    """
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(t, p) for t in sorted(topics) for p in sorted(cluster.partitions_for_topic(t) or ())]


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


async def read_topics(bootstrap: str, topics: list[str]) -> dict[str, list[Event]]:
    """Every record of ``topics`` from the beginning to the current end (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    out: dict[str, list[Event]] = {t: [] for t in topics}
    try:
        parts = await partitions(consumer, topics)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2000)
            for tp, records in batch.items():
                for r in records:
                    ce = json.loads(r.value)
                    out[tp.topic].append(
                        Event(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=r.offset,
                            key=(r.key or b"").decode(),
                            id=str(ce["id"]),
                            type=str(ce["type"]),
                            time=_epoch(ce["time"]),
                            data=ce.get("data") or {},
                            appended=r.timestamp / 1000,
                        )
                    )
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def dlq_counts(bootstrap: str) -> dict[str, int]:
    """Records on every dead-letter topic (``*.dlq``, including the delivery channels' ones)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.endswith(".dlq")]
        parts = await partitions(consumer, topics)
        ends = await consumer.end_offsets(parts) if parts else {}
        starts = await consumer.beginning_offsets(parts) if parts else {}
    finally:
        await consumer.stop()
    counts: dict[str, int] = {t: 0 for t in topics}
    for tp, end in ends.items():
        counts[tp.topic] += end - starts[tp]
    return counts


async def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Per consumer group: records not yet committed on every partition of the topics it committed on.

    A partition of such a topic without a commit counts from its start, so a partition the group
    never got to is lag too.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        groups = [str(g[0]) for g in await admin.list_consumer_groups()]
        lag: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            topics = {tp.topic for tp in committed}
            if not topics:
                lag[group] = 0
                continue
            parts = await partitions(consumer, topics)
            if not parts:
                raise RuntimeError(f"no partition metadata for {sorted(topics)}: cannot tell the lag of {group}")
            ends = await consumer.end_offsets(parts)
            starts = await consumer.beginning_offsets(parts)
            total = 0
            for tp in parts:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                total += max(0, ends[tp] - done)
            lag[group] = total
    finally:
        await consumer.stop()
        await admin.close()
    return lag


def read_alerts_db(admin_url: str) -> tuple[list[AlertRow], dict[str, SubscriptionRow], list[DeliveryRow]]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        alerts = [
            AlertRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), _epoch(r[4]), str(r[5]))
            for r in conn.execute(
                "SELECT id, company_id, target_type, target_id, created_at, source_event_id FROM alerts"
            ).fetchall()
        ]
        subs = {
            str(r[0]): SubscriptionRow(str(r[0]), bool(r[1]), float(r[2]), bool(r[3] or r[4] or r[5]))
            for r in conn.execute(
                "SELECT company_id, active, min_score, programmes::text <> '[]', domains::text <> '[]', "
                "keywords::text <> '[]' FROM subscriptions"
            ).fetchall()
        }
        deliveries = [
            DeliveryRow(*(str(v) for v in r))
            for r in conn.execute("SELECT id, alert_id, company_id, channel, mode, status FROM deliveries").fetchall()
        ]
    return alerts, subs, deliveries


async def drain(platform: ChaosPlatform, *, timeout: float) -> tuple[dict[str, int], float]:
    """Wait until every outbox is empty and every consumer group has lag 0; returns the last lag and seconds taken."""
    start = time.monotonic()
    lag: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() - start < timeout:
            pending = 0
            for svc in platform.services.values():
                try:
                    health = (await http.get(f"{svc.url}/healthz")).json()
                    pending += int(health.get("outbox_pending") or 0)
                except (httpx.HTTPError, ValueError) as exc:
                    log.info("drain: %s not answering yet (%r)", svc.name, exc)
                    pending += 1
            lag = await consumer_lag(platform.kafka.bootstrap)
            if pending == 0 and not any(lag.values()):
                break
            await asyncio.sleep(2)
    return lag, time.monotonic() - start


async def observe(platform: ChaosPlatform, *, drain_timeout: float) -> Observations:
    lag, took = await drain(platform, timeout=drain_timeout)
    log.info("drained in %.0fs (lag %s)", took, {g: n for g, n in lag.items() if n} or 0)
    # A last moment for receipts of deliveries marked delivered just now (longer for the lossy variant,
    # whose late applies must have happened before its losses are counted).
    await asyncio.sleep(float(os.environ.get("CHAOS_SETTLE_S", "2")))
    events = await read_topics(platform.kafka.bootstrap, list(READ_TOPICS))
    alerts, subs, deliveries = read_alerts_db(platform.pg.admin_url("alerts"))
    return Observations(
        events=events,
        alerts=alerts,
        subscriptions=subs,
        deliveries=deliveries,
        received=platform.receiver.deliveries.snapshot() + platform.smtp.deliveries.snapshot(),
        dlq=await dlq_counts(platform.kafka.bootstrap),
        lag=lag,
    )
