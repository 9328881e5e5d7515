"""`make bench` (core flow): project posted → alert in the inbox, over real service processes.

100 projects are posted one at a time with 1,000 companies registered (all subscribed, no filters);
the latency is measured from the POST to the ``alert.raised`` record for that project, which the
alerts service emits in the same transaction as the inbox row. Ranking time per target at 1,000 and
10,000 companies is measured in-process on the matching service's own ``Matcher``, beside plain
rank-bm25 over the same corpus in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from bench.matching.generator import companies, targets
from bench.matching.scale import baseline, measure
from services.calls.replay.server import run_replay_server
from services.matching.matcher import CompanyProfile, Target
from tests.e2e.platform import Platform, start_platform
from tests.infra import Databases, postgres_admin_url

ROOT = Path(__file__).resolve().parents[1]
CITY = {"BE": "Leuven"}


def company_body(p: CompanyProfile) -> dict[str, Any]:
    return {
        "name": f"{p.name} {p.id}",
        "country": p.country if len(p.country) == 2 else "BE",
        "city": p.city or CITY.get(p.country, "Capital"),
        "organisation_type": p.organisation_type,
        "size": p.size,
        "domains": p.domains,
        "capabilities": p.capabilities,
        "keywords": p.keywords,
        "contact_email": f"bench-{p.id.lower()}@example.com",
    }


def project_body(t: Target, i: int) -> dict[str, Any]:
    return {
        "title": f"{t.title} #{i}",
        "summary": t.description[:2000],
        "programme": "FSDB",
        "institute": "Royal Military Academy",
        "domains": t.domains,
        "sought_capabilities": t.sought_capabilities,
        "partners_wanted": 5,
        "contact_email": "bench@rma.example",
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def flow(platform: Platform, bootstrap: str, prefix: str, n_companies: int, n_projects: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {platform.admin_token}"}
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:

        async def register(p: CompanyProfile) -> None:
            async with sem:
                r = await http.post(f"{platform['registry'].url}/companies", json=company_body(p))
                r.raise_for_status()
                body = r.json()
                s = await http.put(
                    f"{platform['alerts'].url}/subscriptions/{body['id']}",
                    json={"programmes": [], "domains": [], "keywords": [], "min_score": 0.0, "active": True},
                )
                s.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(register(p) for p in companies(n_companies)))
        registration_s = time.perf_counter() - started
        # Wait until matching has indexed every company, so each ranking sees all of them.
        while True:
            health = (await http.get(f"{platform['matching'].url}/healthz")).json()
            if sum(c["processed"] for c in health.get("consumers", {}).values()) >= n_companies:
                break
            await asyncio.sleep(0.5)

        consumer = AIOKafkaConsumer(
            f"{prefix}alerts.v1",
            bootstrap_servers=bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        await consumer.seek_to_end()
        latencies = []
        try:
            for i, target in enumerate(targets(n_projects, seed=11)):
                t0 = time.perf_counter()
                r = await http.post(f"{platform['projects'].url}/projects", json=project_body(target, i))
                r.raise_for_status()
                project_id = r.json()["id"]
                while True:
                    record = await asyncio.wait_for(consumer.getone(), 60)
                    if json.loads(record.value)["data"]["target_id"] == project_id:
                        latencies.append(time.perf_counter() - t0)
                        break
        finally:
            await consumer.stop()
    ms = [x * 1000 for x in latencies]
    return {
        "companies": n_companies,
        "projects": len(ms),
        "registration_seconds": round(registration_s, 1),
        "posted_to_alert_ms_median": round(statistics.median(ms), 1),
        "posted_to_alert_ms_p99": round(pct(ms, 0.99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=100)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "up", "single"], check=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    databases = Databases(postgres_admin_url())
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    result: dict[str, Any] = {"bench": "core flow"}
    with run_replay_server() as portal, tempfile.TemporaryDirectory() as logs:
        platform = start_platform(
            databases=databases, bootstrap=bootstrap, prefix=prefix, log_dir=Path(logs), portal_url=portal.endpoint
        )
        try:
            result["posted_to_alert"] = asyncio.run(flow(platform, bootstrap, prefix, args.companies, args.projects))
        finally:
            platform.stop()
            databases.drop_all()
    queries = targets(30)
    result["ranking"] = [
        {k: v for k, v in measure(n, queries, updates=5).items() if k.startswith(("companies", "rank_ms"))}
        for n in (1000, 10000)
    ]
    result["ranking_baseline_rank_bm25"] = [baseline(n, queries[:10]) for n in (1000, 10000)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
