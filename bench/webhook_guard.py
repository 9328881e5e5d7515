"""What the webhook destination guard costs: POSTs through the guarded transport beside a plain one.

``python -m bench.webhook_guard [--posts 400] [--rounds 3]`` starts the receiver of
``bench.alerts_webhook`` (uvicorn, its own process) and, in one process and in alternating rounds,
sends ``--posts`` sequential POSTs to it through:

- ``plain``: ``httpx.AsyncHTTPTransport`` as httpx builds it;
- ``guarded``: ``services.alerts.destination.guarded_transport`` (resolve once, check every address,
  connect to the checked address), as the alerts service sends webhooks;

each once with keep-alive (the service's pool: the check runs once per connection) and once with a
new connection per POST (the worst case: resolve and check every time). The host is ``localhost``,
so a name is resolved, and allowed by the policy (``ALERTS_WEBHOOK_ALLOW``-style exception) as a
test receiver would be. Prints one JSON line: per variant the median and p99 latency (ms) and the
POSTs per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from typing import Any

import httpx

from bench.alerts_webhook import start_receiver
from services.alerts.destination import DestinationPolicy, guarded_transport

POOLED = httpx.Limits(max_connections=10, max_keepalive_connections=10)
FRESH = httpx.Limits(max_connections=10, max_keepalive_connections=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transport(kind: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    if kind == "guarded":
        policy = DestinationPolicy.from_settings(allow=("localhost", "127.0.0.1", "::1"), local_mode=True)
        return guarded_transport(policy, limits=limits)
    return httpx.AsyncHTTPTransport(trust_env=False, limits=limits)


async def _round(kind: str, limits: httpx.Limits, url: str, posts: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(transport=_transport(kind, limits), timeout=10) as client:
        await client.post(url, json={"i": -1, "sent_at": time.time()})  # warm up (and open the pooled connection)
        for i in range(posts):
            started = time.perf_counter()
            response = await client.post(url, json={"i": i, "sent_at": time.time(), "pad": "x" * 900})
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 204:
                raise RuntimeError(f"the receiver answered {response.status_code}")
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
        "posts_per_s": round(len(ordered) / (sum(ordered) / 1000), 1),
    }


async def run(posts: int, rounds: int) -> dict[str, Any]:
    port = _free_port()
    receiver = start_receiver(port)
    url = f"http://localhost:{port}/hook"
    samples: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):  # alternate, so drift on a shared machine hits every variant alike
            for connection, limits in (("keepalive", POOLED), ("new_connection", FRESH)):
                for kind in ("plain", "guarded"):
                    samples.setdefault(f"{kind}_{connection}", []).extend(await _round(kind, limits, url, posts))
    finally:
        receiver.terminate()
        receiver.join(5)
    result: dict[str, Any] = {"bench": "webhook_guard", "posts_per_variant": posts * rounds}
    result |= {name: _summary(values) for name, values in samples.items()}
    for connection in ("keepalive", "new_connection"):
        plain = result[f"plain_{connection}"]["median_ms"]
        result[f"guard_overhead_{connection}_ms"] = round(result[f"guarded_{connection}"]["median_ms"] - plain, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=400, help="POSTs per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.posts, args.rounds))))


if __name__ == "__main__":
    main()
