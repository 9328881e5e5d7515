"""`make bench-portal`: what the web portal adds to the API time, with 10,000 registered companies.

The five services and the portal run as processes on Kafka and PostgreSQL (sessions too). After
registering the companies (matching indexes all of them), posting projects that alert one subscribed
company, and polling the calls, each page is requested ``--requests`` times in turn:

- ``/projects/{id}`` as the institute (the project, its suggestions and consortium proposals),
- ``/inbox`` as the company (50 newest alerts and the subscription),
- ``/calls`` anonymously (its first page of up to 25; the bundled replay has 6 EDF topics).

The portal answers every request with ``Server-Timing: api;dur=…, app;dur=…``: ``app`` is its whole
server-side time up to the response headers (session lookup, API calls, rendering), ``api`` the wall
time it spent waiting for the services. The same API calls are also made directly, in the same run,
as the baseline, and the page's whole round trip is timed by the client too (what a browser waits
for, including the HTTP layers outside the portal's own timer). Printed: median and p99 of each, and
of ``app - api`` per request (what the portal adds; target < 20 ms at p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.core_flow import company_body, pct
from bench.matching.generator import companies
from services.calls.replay.server import run_replay_server
from tests.e2e.platform import Platform, start_platform, start_portal
from tests.infra import Databases, postgres_admin_url

ROOT = Path(__file__).resolve().parents[1]
INSTITUTE = "Bench Institute"
TIMING = re.compile(r"(\w+);dur=([0-9.]+)")
# The one subscribed company: Belgian (FSDB projects only rank Belgian partners) and a close fit.
FIT = {
    "country": "BE",
    "city": "Leuven",
    "contact_email": "radar@bench.example",
    "domains": ["aviation-counter-uas", "artificial-intelligence"],
    "capabilities": ["Radar detection of small drones", "AI sensor fusion for counter-UAS tracking"],
}


def project(i: int) -> dict[str, Any]:
    return {
        "title": f"Counter-drone sensing #{i}",
        "summary": "Detect, track and classify small drones near critical infrastructure with radar and AI.",
        "programme": "FSDB",
        "institute": INSTITUTE,
        "domains": FIT["domains"],
        "sought_capabilities": ["Radar detection of small drones", "Sensor fusion and tracking of UAS"],
        "partners_wanted": 5,
        "contact_email": "bench@institute.example",
    }


def stats(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values), 2), "p99_ms": round(pct(values, 0.99), 2)}


async def setup(platform: Platform, n_companies: int, n_alerts: int) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {platform.admin_token}"}
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=120, headers=admin) as http:
        started = time.perf_counter()

        async def register(body: dict[str, Any]) -> None:
            async with sem:
                (await http.post(f"{platform['registry'].url}/companies", json=body)).raise_for_status()

        await asyncio.gather(*(register(company_body(p)) for p in companies(n_companies - 1)))
        fit = {**company_body(next(iter(companies(1, seed=99)))), **FIT, "name": "Bench Radar Co"}
        r = await http.post(f"{platform['registry'].url}/companies", json=fit)
        r.raise_for_status()
        company_id, company_token = r.json()["id"], r.json()["api_token"]
        subscription = {"programmes": [], "domains": [], "keywords": [], "min_score": 0.0, "active": True}
        (await http.put(f"{platform['alerts'].url}/subscriptions/{company_id}", json=subscription)).raise_for_status()
        while True:  # matching has indexed every company (and the calls it polled): each ranking sees all
            calls = (await http.get(f"{platform['calls'].url}/calls?limit=1")).json()["total"]
            health = (await http.get(f"{platform['matching'].url}/healthz")).json()
            if sum(c["processed"] for c in health.get("consumers", {}).values()) >= n_companies + calls:
                break
            await asyncio.sleep(0.5)
        print(f"registered {n_companies} companies in {time.perf_counter() - started:.0f}s", flush=True)

        r = await http.post(f"{platform['registry'].url}/accounts", json={"role": "institute", "name": INSTITUTE})
        r.raise_for_status()
        institute_token = r.json()["api_token"]
        project_ids = []
        for i in range(n_alerts):
            r = await http.post(f"{platform['projects'].url}/projects", json=project(i))
            r.raise_for_status()
            project_ids.append(r.json()["id"])
        (await http.post(f"{platform['calls'].url}/calls/poll")).raise_for_status()
        deadline = time.monotonic() + 300
        inbox = f"{platform['alerts'].url}/companies/{company_id}/alerts?limit=100"
        while True:  # the inbox this bench claims to render: an alert for every project, and the proposals
            alerts = (await http.get(inbox)).json()["items"]
            about_projects = sum(a["target_type"] == "project" for a in alerts)
            consortia = (await http.get(f"{platform['projects'].url}/projects/{project_ids[-1]}/consortia")).json()
            if about_projects >= n_alerts and consortia.get("computed_at"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"after 300 s only {about_projects} of {n_alerts} project alerts: not measuring")
            await asyncio.sleep(1)
        print(f"{len(alerts)} alerts in the inbox ({about_projects} about the projects); proposals stored", flush=True)
    return {
        "company_id": company_id,
        "company_token": company_token,
        "institute_token": institute_token,
        "project_id": project_ids[-1],
    }


async def login(http: httpx.AsyncClient, token: str) -> None:
    page = await http.get("/login")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert csrf, "no CSRF token on /login"
    r = await http.post("/login", data={"token": token, "csrf_token": csrf.group(1), "next": ""})
    assert r.status_code == 303, r.text


async def measure(
    portal_url: str, token: str | None, path: str, direct: Callable[[], Awaitable[None]], n: int
) -> dict[str, Any]:
    app, api, added, client, baseline = [], [], [], [], []
    async with httpx.AsyncClient(base_url=portal_url, timeout=60, follow_redirects=False) as http:
        if token:
            await login(http, token)
        for _ in range(10):  # warm up connections and caches on both paths
            await http.get(path)
            await direct()
        for _ in range(n):
            t0 = time.perf_counter()
            r = await http.get(path)
            client.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, f"{path}: {r.status_code}"
            timing = {k: float(v) for k, v in TIMING.findall(r.headers["server-timing"])}
            app.append(timing["app"])
            api.append(timing["api"])
            added.append(timing["app"] - timing["api"])
            t0 = time.perf_counter()
            await direct()
            baseline.append((time.perf_counter() - t0) * 1000)
    return {
        "page": path,
        "requests": n,
        "portal_server_side": stats(app),
        "of_which_api": stats(api),
        "portal_adds": stats(added),
        "portal_page_as_the_client_sees_it": stats(client),
        "same_api_calls_direct": stats(baseline),
    }


async def pages(platform: Platform, portal_url: str, ids: dict[str, str], n: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as http:
        inst = {"Authorization": f"Bearer {ids['institute_token']}"}
        comp = {"Authorization": f"Bearer {ids['company_token']}"}
        projects, alerts, calls = platform["projects"].url, platform["alerts"].url, platform["calls"].url
        pid, cid = ids["project_id"], ids["company_id"]

        async def project_calls() -> None:  # what the portal does for /projects/{id}
            (await http.get(f"{projects}/projects/{pid}", headers=inst)).raise_for_status()
            for r in await asyncio.gather(
                http.get(f"{projects}/projects/{pid}/suggestions", headers=inst),
                http.get(f"{projects}/projects/{pid}/consortia", headers=inst),
            ):
                r.raise_for_status()

        async def inbox_calls() -> None:
            (await http.get(f"{alerts}/companies/{cid}/alerts?limit=50", headers=comp)).raise_for_status()
            (await http.get(f"{alerts}/subscriptions/{cid}", headers=comp)).raise_for_status()

        async def calls_calls() -> None:
            (await http.get(f"{calls}/calls?limit=25&offset=0")).raise_for_status()

        return [
            await measure(portal_url, ids["institute_token"], f"/projects/{pid}", project_calls, n),
            await measure(portal_url, ids["company_token"], "/inbox", inbox_calls, n),
            await measure(portal_url, None, "/calls", calls_calls, n),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=50, help="projects posted: alerts in the inbox")
    parser.add_argument("--requests", type=int, default=300, help="requests per page")
    parser.add_argument("--log-dir", type=Path, help="keep the services' logs here (default: a temporary folder)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    kafka_sh = ["bash", str(ROOT / "deploy/kafka/kafka.sh")]
    started_kafka = False
    if not bootstrap:  # the local single broker of `make kafka-up`; one started here is stopped again
        status = subprocess.run([*kafka_sh, "status", "single"], capture_output=True, check=False)
        started_kafka = status.returncode != 0
        subprocess.run([*kafka_sh, "up", "single"], check=True)
        bootstrap = "127.0.0.1:9092"
    databases = Databases(postgres_admin_url())
    prefix = f"benchportal{uuid.uuid4().hex[:6]}."
    result: dict[str, Any] = {"bench": "portal", "companies": args.companies, "target": "portal_adds p99 < 20 ms"}
    try:
        with run_replay_server() as replay, tempfile.TemporaryDirectory() as tmp:
            logs = args.log_dir or Path(tmp)
            logs.mkdir(parents=True, exist_ok=True)
            platform = start_platform(
                databases=databases, bootstrap=bootstrap, prefix=prefix, log_dir=logs, portal_url=replay.endpoint
            )
            try:
                portal = start_portal(platform, database_url=databases.create("portal"), log_dir=logs)
                ids = asyncio.run(setup(platform, args.companies, args.alerts))
                result["pages"] = asyncio.run(pages(platform, portal.url, ids, args.requests))
            finally:
                platform.stop()
    finally:
        databases.drop_all()
        if started_kafka:
            subprocess.run([*kafka_sh, "down", "single"], check=False)
    print(f"{'page':<18} {'median / p99 ms':>44}")
    for page in result["pages"]:
        print(f"{page['page'][:18]}")
        for label, key in (
            ("portal server-side (Server-Timing app)", "portal_server_side"),
            ("  of which waiting for the API", "of_which_api"),
            ("  portal adds (app - api, per request)", "portal_adds"),
            ("portal page as the client sees it", "portal_page_as_the_client_sees_it"),
            ("baseline: same API calls, direct", "same_api_calls_direct"),
        ):
            print(f"  {label:<40} {page[key]['median_ms']:>8.2f} / {page[key]['p99_ms']:>8.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
