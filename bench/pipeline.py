"""`make bench`: the latency of one event through outbox → Kafka → idempotent consumer.

Measured beside a bare aiokafka produce → consume round trip on the same broker, in the same run,
so the ratio shows what the guarantees (transactional write, acks=all + idempotence, inbox row in
the consumer's transaction, commit after side effects) cost. Events are sent one at a time: this is
latency, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events.base import CloudEvent
from shared.events.projects import ProjectClosed
from shared.kafka import all_topics, ensure_topics
from shared.outbox import UnitOfWork
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[1]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def bare_round_trip(kafka: KafkaSettings, n: int) -> list[float]:
    topic = kafka.topic("bench.bare")
    await ensure_topics(kafka, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    await _wait_assigned(consumer)
    samples = []
    try:
        for i in range(n):
            start = time.perf_counter()
            await producer.send_and_wait(topic, value=str(i).encode(), key=b"k")
            record = await consumer.getone()
            await consumer.commit()
            samples.append(time.perf_counter() - start)
            assert record.value == str(i).encode()
    finally:
        await consumer.stop()
        await producer.stop()
    return samples


async def _wait_assigned(consumer: AIOKafkaConsumer) -> None:
    for _ in range(200):
        if consumer.assignment():
            await consumer.seek_to_end()
            return
        await asyncio.sleep(0.05)
        await consumer.getmany(timeout_ms=50)


async def pipeline_round_trip(kafka: KafkaSettings, n: int) -> list[float]:
    received: dict[str, asyncio.Future[float]] = {}

    async def handler(uow: UnitOfWork, ce: CloudEvent, data: Any) -> None:
        return None

    async def done(ce: CloudEvent) -> None:
        fut = received.get(ce.subject)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    producer = ServiceRuntime("bench-producer", ServiceSettings(database_url=database_url(), kafka=kafka), tables=[])
    consumer = ServiceRuntime("bench-consumer", ServiceSettings(database_url=database_url(), kafka=kafka), tables=[])
    consumer.consumer(
        "bench.consumer",
        topics=["projects.v1"],
        handlers={ProjectClosed.event_type: handler},
        after_side_effects=done,
    )
    samples = []
    async with producer.lifespan(), consumer.lifespan():
        while not consumer.kafka_ready.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(3)  # let the group settle so the first samples measure steady state
        for i in range(n):
            key = f"bench-{i}"
            received[key] = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            async with producer.uow() as uow:
                uow.emit(ProjectClosed(project_id=key), subject=key)
                await uow.commit()
            end = await asyncio.wait_for(received[key], 30)
            samples.append(end - start)
    return samples


def database_url() -> str:
    """A fresh PostgreSQL database (each side of the pipeline owns one, as services do)."""
    admin = (
        os.environ.get("DATABASE_URL")
        or subprocess.run(
            ["bash", str(ROOT / "deploy/postgres/pg.sh"), "up"], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + "/" + name


async def main_async(n: int) -> dict[str, Any]:
    kafka = KafkaSettings(TOPIC_PREFIX=f"bench{uuid.uuid4().hex[:6]}.")  # type: ignore[call-arg]
    await ensure_topics(kafka, all_topics(kafka))
    bare = await bare_round_trip(kafka, n)
    pipe = await pipeline_round_trip(kafka, n)
    b, p = summary(bare), summary(pipe)
    return {
        "bench": "event pipeline latency",
        "database": "postgresql",
        "bare_aiokafka": b,
        "outbox_kafka_idempotent_consumer": p,
        "ratio_median": round(p["median_ms"] / b["median_ms"], 2),
        "ratio_p99": round(p["p99_ms"] / b["p99_ms"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "up", "single"], check=True)
    result = asyncio.run(main_async(args.events))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
