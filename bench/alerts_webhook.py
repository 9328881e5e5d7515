"""Alert → webhook delivered: latency at a steady rate, beside a bare HTTP POST to the same receiver.

``python -m bench.alerts_webhook [--alerts 1000] [--rate 100]`` (``make bench-delivery RATE= ALERTS=``)
starts a local Kafka broker (as ``make bench`` does), runs the alerts service in-process on a fresh
PostgreSQL database, and a receiver (uvicorn, in its own process). ``--fanout`` companies (10) have a webhook
channel; one ``suggestions.v1`` event suggests all of them, so ``--rate``/``--fanout`` events per
second raise ``--rate`` alerts (and webhook deliveries) per second.

- ``alert_to_webhook``: from the alert's ``raised_at`` (set in the transaction that creates it) to
  the signed POST arriving at the receiver — through the outbox, ``alerts.deliveries.v1``, the
  delivery consumer's transaction and the HTTP call.
- ``bare_httpx_post``: from just before ``httpx.AsyncClient.post`` to the request arriving at the
  same receiver, at the same rate, in the same run.
- ``throughput_per_s``: deliveries that arrived over the time from the first suggestion produced to
  the last arrival (at a rate the service keeps up with, it is the rate itself).
- ``duplicates``: POSTs beyond the first for one CloudEvent id (one per alert and channel).

Prints one JSON line. With ``KAFKA_BOOTSTRAP_SERVERS`` set it uses that broker instead of starting one;
PostgreSQL comes from ``DATABASE_URL`` (or ``deploy/postgres/pg.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer

from bench.pipeline import ROOT, database_url, summary
from services.alerts import delivery
from services.alerts.bootstrap import build
from services.alerts.delivery_models import WebhookChannelIn
from services.alerts.destination import DestinationPolicy
from services.alerts.domain import put_subscription
from services.alerts.models import SubscriptionIn
from services.alerts.settings import AlertsSettings
from shared.events.base import envelope
from shared.events.suggestions import MatchReasons, SuggestionItem, SuggestionsComputed
from shared.settings import KafkaSettings

BARE_POSTS = 1000


class Receiver:
    """A minimal ASGI webhook receiver: ``POST`` anything is noted with its arrival time;
    ``GET /arrivals`` hands over (and forgets) what arrived. It runs in its own process, so it takes
    no CPU or GIL from the service under test."""

    def __init__(self) -> None:
        self.arrivals: list[list[Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            out, self.arrivals = self.arrivals, []
            payload = json.dumps(out).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        arrived = time.time()
        event = json.loads(body)
        data = event.get("data") or {}
        # [arrival, CloudEvent id (or bare request number), alert raised_at (or bare sent_at), target id]
        self.arrivals.append(
            [
                arrived,
                event.get("id", event.get("i")),
                data.get("raised_at", event.get("sent_at")),
                data.get("target_id"),
            ]
        )
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _run_receiver(port: int) -> None:
    uvicorn.run(Receiver(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def start_receiver(port: int) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=_run_receiver, args=(port,), daemon=True)
    process.start()
    deadline = time.time() + 20
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if time.time() > deadline or not process.is_alive():
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.05)


async def take(client: httpx.AsyncClient, url: str) -> list[list[Any]]:
    return list((await client.get(url)).json())


async def paced(n: int, rate: float, send: Any) -> None:
    """Call ``send(i)`` at ``rate`` per second (not waiting for each to finish)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send(i)))
    await asyncio.gather(*tasks)


async def bare_posts(url: str, arrivals_url: str, n: int, rate: float) -> list[float]:
    # Beyond 20 connections a request waits (counted in its latency), without a deadline: opening
    # hundreds at once only measures the receiver's accept queue.
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, pool=None), limits=limits) as client:
        await client.post(url, json={"i": -1, "sent_at": time.time()})
        await take(client, arrivals_url)

        async def post(i: int) -> None:
            await client.post(url, json={"i": i, "sent_at": time.time(), "pad": "x" * 900})

        await paced(n, rate, post)
        return [arrived - sent_at for arrived, _, sent_at, _ in await take(client, arrivals_url)]


def suggestion(target_id: str, company_ids: list[str]) -> bytes:
    data = SuggestionsComputed(
        target_type="project",
        target_id=target_id,
        target_title=f"Bench target {target_id[:8]}",
        programme="FSDB",
        domains=["cybersecurity"],
        algorithm_version="bench",
        computed_at=datetime.now(UTC),
        suggestions=[
            SuggestionItem(
                company_id=company_id,
                company_name=f"Bench {rank} BV",
                country="BE",
                rank=rank,
                score=0.9,
                reasons=MatchReasons(summary="bench", matched_domains=["cybersecurity"]),
            )
            for rank, company_id in enumerate(company_ids, start=1)
        ],
    )
    return envelope(data, source="matching", subject=target_id).model_dump_json().encode()


async def alert_to_webhook(
    kafka: KafkaSettings, url: str, arrivals_url: str, n: int, rate: float, fanout: int, stall_s: float = 30.0
) -> dict[str, Any]:
    # The receiver runs on 127.0.0.1, which webhooks may reach only when allowed explicitly.
    settings = AlertsSettings(
        ALERTS_DATABASE_URL=database_url(),  # type: ignore[call-arg]
        ALERTS_WEBHOOK_ALLOW="127.0.0.1",
        kafka=kafka,
    )
    _, runtime = build(settings)
    policy = DestinationPolicy.from_settings(allow=settings.webhook_allow, local_mode=settings.local_mode)
    companies = [str(uuid.uuid4()) for _ in range(fanout)]
    events = n // fanout
    produced_at: dict[str, float] = {}
    arrivals: list[list[Any]] = []
    async with runtime.lifespan(), httpx.AsyncClient(timeout=10) as client:
        while not runtime.kafka_ready.is_set():
            await asyncio.sleep(0.05)
        async with runtime.uow() as uow:
            for company_id in companies:
                await put_subscription(uow, company_id=company_id, data=SubscriptionIn(min_score=0.0))
            await uow.commit()
        async with runtime.uow() as uow:
            for company_id in companies:
                await delivery.put_webhook_channel(
                    uow,
                    company_id=company_id,
                    data=WebhookChannelIn(url=url),  # type: ignore[arg-type]
                    policy=policy,
                )
            await uow.commit()
        await asyncio.sleep(4)  # let every consumer group settle: steady state, not the first rebalance
        await take(client, arrivals_url)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=0)
        await producer.start()
        try:

            async def produce(i: int) -> None:
                # One suggestion alerts every company, as a new target does with its ranked partners.
                target = str(uuid.uuid4())
                produced_at[target] = time.time()
                await producer.send_and_wait(
                    kafka.topic("suggestions.v1"), suggestion(target, companies), key=target.encode()
                )

            started = time.time()
            await paced(events, rate / fanout, produce)
            # Wait for everything, giving up only when nothing has arrived for a while (a slow
            # baseline still finishes; a lost delivery does not hang the bench).
            seen: set[Any] = set()
            last_progress = time.time()
            while len(seen) < events * fanout and time.time() - last_progress < stall_s:
                await asyncio.sleep(0.2)
                new = await take(client, arrivals_url)
                if new:
                    arrivals += new
                    seen.update(a[1] for a in new)
                    last_progress = time.time()
        finally:
            await producer.stop()
    first: dict[str, list[Any]] = {}
    for arrival in arrivals:
        first.setdefault(arrival[1], arrival)
    raised = {event_id: datetime.fromisoformat(a[2]).timestamp() for event_id, a in first.items()}
    return {
        "alert_rate": round(len(raised) / max(max(raised.values()) - min(raised.values()), 1e-9), 1)
        if len(raised) > 1
        else None,
        "latencies": [a[0] - raised[event_id] for event_id, a in first.items()],
        "end_to_end": [a[0] - produced_at[a[3]] for a in first.values() if a[3] in produced_at],
        "delivered": len(first),
        "duplicates": len(arrivals) - len(first),
        "throughput": len(first) / max(max(a[0] for a in first.values()) - started, 1e-9) if first else 0.0,
    }


async def main_async(n: int, rate: float, fanout: int) -> dict[str, Any]:
    kafka = KafkaSettings(TOPIC_PREFIX=f"bench{uuid.uuid4().hex[:6]}.")  # type: ignore[call-arg]
    port = _free_port()
    receiver = start_receiver(port)
    url, arrivals_url = f"http://127.0.0.1:{port}/hook", f"http://127.0.0.1:{port}/arrivals"
    try:
        # The reference needs no more than 1,000 samples (and more in flight only measures httpcore's
        # pool queue, whose bookkeeping grows with the square of the waiting requests).
        bare = await bare_posts(url, arrivals_url, min(n, BARE_POSTS), rate)
        pipe = await alert_to_webhook(kafka, url, arrivals_url, n, rate, fanout)
    finally:
        receiver.terminate()
        receiver.join(5)
    b, p = summary(bare), summary(pipe["latencies"])
    return {
        "bench": "alert to webhook delivered latency",
        "database": "postgresql",
        "rate_per_s": rate,
        "alerts": n,
        "processes": 1,
        "companies_per_suggestion": fanout,
        "alert_rate_per_s": pipe["alert_rate"],
        "bare_httpx_post": b,
        "alert_to_webhook": p,
        "suggestion_to_webhook": summary(pipe["end_to_end"]),
        "delivered": pipe["delivered"],
        "duplicates": pipe["duplicates"],
        "throughput_per_s": round(pipe["throughput"], 1),
        "ratio_median": round(p["median_ms"] / b["median_ms"], 2),
        "ratio_p99": round(p["p99_ms"] / b["p99_ms"], 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="alerts (and bare POSTs) per second")
    parser.add_argument("--fanout", type=int, default=10, help="companies alerted by each suggestion event")
    args = parser.parse_args()
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # else: use that broker
        subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "up", "single"], check=True)
    with contextlib.redirect_stdout(sys.stderr):  # FastStream logs to stdout; ours is the result line only
        result = asyncio.run(main_async(args.alerts, args.rate, args.fanout))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
