"""The steady load of a fault run, and the ledger of every write the platform acknowledged.

Four loops run side by side: companies register (and subscribe, with webhook and e-mail channels) and
update their profiles; an institute posts, edits and closes projects; the replayed EU portal changes
and the call watcher is told to poll it. Each loop writes one key at a time, so for every key the
order of acknowledgements is the order its events must have on the topic.

Every write carries its revision in a field that travels in its event (a company's ``city``, a
project's ``summary``, a call's ``title``), so the checker can match each acknowledged write to its
event without trusting anything the platform says about itself.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import httpx

from services.calls.replay.server import DEFAULT_DATA, ReplayServer, load_rows
from tests.infra import ROOT

log = logging.getLogger(__name__)

Kind = Literal["company", "project", "call"]
DEMO = ROOT / "deploy" / "local" / "demo"
INSTITUTE = "Chaos Institute for Resilience"

COMPANY_REV = re.compile(r" r(\d+)$")
TEXT_REV = re.compile(r"\[rev (\d+)\]$")


def canary_capability(token: str) -> str:
    """A capability only the canary company has and only the canary project seeks: it ranks first."""
    return f"Resilient {token} instrumentation for {token} sensing"


def company_city(rev: int) -> str:
    return f"Leuven r{rev}"


def with_rev(text: str, rev: int) -> str:
    return f"{TEXT_REV.sub('', text).rstrip()} [rev {rev}]"


def rev_of(kind: Kind, data: dict[str, Any]) -> int | None:
    """The revision a write put into an event's data; None when the event carries none."""
    if kind == "company":
        m = COMPANY_REV.search(str(data.get("company", {}).get("city", "")))
    elif kind == "project":
        m = TEXT_REV.search(str(data.get("project", {}).get("summary", "")))
    else:
        m = TEXT_REV.search(str(data.get("call", {}).get("title", "")))
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Ack:
    """One write the platform acknowledged (2xx): its key must get an event with this revision."""

    kind: Kind
    key: str
    rev: int
    at: float
    closes: bool = False


@dataclass
class Ledger:
    """What the load did: acknowledged writes, failures, and the posts alert latency is measured from."""

    acks: list[Ack] = field(default_factory=list)
    # Acknowledged HTTP writes (a poll re-states every call: it is one write with many acks).
    acknowledged: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # project id → when its post was acknowledged
    posted_at: dict[str, float] = field(default_factory=dict)
    # company id → when its subscription was acknowledged
    subscribed_at: dict[str, float] = field(default_factory=dict)
    # (company id, channel) → when the channel was acknowledged
    channel_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def ack(self, kind: Kind, key: str, rev: int, *, closes: bool = False) -> None:
        self.acks.append(Ack(kind, key, rev, time.time(), closes))

    def fail(self, what: str) -> None:
        self.failed += 1
        self.failures[what] = self.failures.get(what, 0) + 1


@dataclass(frozen=True)
class Rates:
    """Writes per second of each loop (the whole load is a few writes a second: the machine has 2 cores)."""

    companies: float = 0.7
    projects: float = 0.35
    call_polls: float = 0.15
    max_companies: int = 150
    # Every company change re-scores every open target in matching: keep the open set small.
    max_open_projects: int = 8
    max_open_calls: int = 6


# Back-pressure: the loops pause while a consumer group is this far behind, and resume below half of it.
# An open-loop load faster than the shared 2-core machine can serve would grow an unbounded backlog,
# and recovery times would measure that backlog instead of the fault.
LAG_LIMITS = {"matching": 4, "alerts.suggestions": 10, "alerts.deliveries": 60}


# How long a subscription waits for its confirmation e-mail before it gives up on the e-mail channel.
CONFIRMATION_WAIT_S = 60.0


class Endpoints:
    """Where to send each service's requests (the first running replica, resolved per request)."""

    def __init__(
        self,
        url_of: Callable[[str], str],
        *,
        admin_token: str,
        webhook_url: str,
        confirmation_token: Callable[[str], str | None],
    ) -> None:
        self.url_of = url_of
        self.admin_token = admin_token
        self.webhook_url = webhook_url
        # The SMTP sink's view of the confirmation e-mail sent to an address (e-mail channels need one).
        self.confirmation_token = confirmation_token


class Load:
    """The load loops and the ledger they fill."""

    def __init__(self, endpoints: Endpoints, portal: ReplayServer, *, rates: Rates, seed: int = 13) -> None:
        self.endpoints = endpoints
        self.portal = portal
        self.rates = rates
        self.ledger = Ledger()
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self.templates: list[dict[str, Any]] = json.loads((DEMO / "companies.json").read_text())
        self.companies: dict[str, dict[str, Any]] = {}  # id → {"token", "rev", "body"}
        self.projects: dict[str, int] = {}  # open project id → rev
        self.institute_token = ""
        self.calls = PortalCalls(portal, self.rng, max_open=rates.max_open_calls)
        self._n = 0
        self._polling = asyncio.Lock()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.paused_s = 0.0

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- requests ---

    async def _request(
        self, what: str, method: str, service: str, path: str, *, token: str | None = None, **kw: Any
    ) -> httpx.Response | None:
        """One request; None (and a counted failure) when it was not acknowledged with a 2xx."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = await self.http.request(method, self.endpoints.url_of(service) + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.ledger.fail(f"{what}: {type(exc).__name__}")
            return None
        if r.status_code >= 300:
            self.ledger.fail(f"{what}: HTTP {r.status_code}")
            if 400 <= r.status_code < 500 and r.status_code not in (401, 408, 409, 429):
                # A 4xx other than auth/conflict is a bug in the load, not a fault: say so loudly.
                log.error("%s %s %s -> %d %s", what, method, path, r.status_code, r.text[:300])
            return None
        if method != "GET":
            self.ledger.acknowledged += 1
        return r

    async def setup(self, deadline: float) -> None:
        """The institute account the projects are posted with (retried: services may still settle)."""
        while time.monotonic() < deadline:
            r = await self._request(
                "institute",
                "POST",
                "registry",
                "/accounts",
                token=self.endpoints.admin_token,
                json={"role": "institute", "name": INSTITUTE},
            )
            if r is not None:
                self.institute_token = str(r.json()["api_token"])
                return
            await asyncio.sleep(1)
        raise TimeoutError("could not create the institute account")

    # --- companies ---

    def _company_body(self, *, unique: str | None = None, template: dict[str, Any] | None = None) -> dict[str, Any]:
        self._n += 1
        base = copy.deepcopy(template or self.rng.choice(self.templates))
        base.pop("enterprise_number", None)
        name = f"{base['name']} {self._n}-{uuid.uuid4().hex[:4]}"
        capabilities = list(base["capabilities"])
        if unique:
            capabilities.insert(0, canary_capability(unique))
        return {
            **base,
            "name": name,
            "country": "BE" if unique or self.rng.random() < 0.8 else base["country"],
            "city": company_city(0),
            "capabilities": capabilities,
            "contact_email": f"c{self._n}@chaos.example",
        }

    async def register_company(
        self, *, unique: str | None = None, template: dict[str, Any] | None = None, subscribe: bool = True
    ) -> str | None:
        """Register a company; most then subscribe, with a random mix of channels (some never do).

        A ``unique`` (canary) company is left alone by the update loop afterwards.
        """
        body = self._company_body(unique=unique, template=template)
        r = await self._request("register", "POST", "registry", "/companies", json=body)
        if r is None:
            return None
        company_id = str(r.json()["id"])
        token = str(r.json()["api_token"])
        self.ledger.ack("company", company_id, 0)
        self.companies[company_id] = {"token": token, "rev": 0, "body": body, "canary": bool(unique)}
        roll = self.rng.random()
        channels = (
            () if roll < 0.2 else ("webhook",) if roll < 0.5 else ("email",) if roll < 0.7 else ("webhook", "email")
        )
        # Some companies never subscribe: they must get no alert.
        if subscribe and roll >= 0.1:
            await self.subscribe(company_id, channels)
        return company_id

    async def subscribe(self, company_id: str, channels: tuple[str, ...], *, deadline: float | None = None) -> bool:
        """Subscription without filters (min score 0: every suggestion alerts), then the channels."""
        token = self.companies[company_id]["token"]
        steps: list[tuple[str, str, dict[str, Any]]] = [
            (
                "subscribe",
                f"/subscriptions/{company_id}",
                {"programmes": [], "domains": [], "keywords": [], "min_score": 0.0},
            ),
        ]
        if "webhook" in channels:
            steps.append(
                ("webhook", f"/subscriptions/{company_id}/channels/webhook", {"url": self.endpoints.webhook_url})
            )
        if "email" in channels:
            steps.append(
                (
                    "email",
                    f"/subscriptions/{company_id}/channels/email",
                    {"address": f"{company_id}@chaos.example", "mode": "immediate"},
                )
            )
        for what, path, body in steps:
            while True:
                r = await self._request(what, "PUT", "alerts", path, token=token, json=body)
                if r is not None:
                    break
                if deadline is None or time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)
            if what == "subscribe":
                self.ledger.subscribed_at[company_id] = time.time()
            elif what == "email":
                # An address gets alerts only once confirmed: the channel counts from the confirmation.
                if not await self._confirm(str(body["address"]), deadline=deadline):
                    return False
                self.ledger.channel_at[(company_id, what)] = time.time()
            else:
                self.ledger.channel_at[(company_id, what)] = time.time()
        return True

    async def _confirm(self, address: str, *, deadline: float | None) -> bool:
        """Follow the link of the confirmation e-mail (POST, as its button does); True once confirmed."""
        until = deadline if deadline is not None else time.monotonic() + CONFIRMATION_WAIT_S
        while time.monotonic() < until:
            token = self.endpoints.confirmation_token(address)
            if token is not None and await self._request("confirm", "POST", "alerts", f"/confirm-email/{token}"):
                return True
            await asyncio.sleep(0.5)
        self.ledger.fail("confirm: no confirmation in time")
        return False

    async def update_company(self) -> None:
        ids = [c for c, e in self.companies.items() if not e["canary"]]
        if not ids:
            return
        company_id = self.rng.choice(ids)
        entry = self.companies[company_id]
        rev = entry["rev"] + 1
        entry["rev"] = rev  # taken even if the write fails: a later write must carry a higher revision
        body: dict[str, Any] = {"city": company_city(rev)}
        if self.rng.random() < 0.3:
            # A real profile change now and then, so matching re-ranks open targets.
            other = self.rng.choice(self.templates)
            body["capabilities"] = [*entry["body"]["capabilities"][:2], self.rng.choice(other["capabilities"])]
        r = await self._request(
            "update", "PATCH", "registry", f"/companies/{company_id}", token=entry["token"], json=body
        )
        if r is not None:
            self.ledger.ack("company", company_id, rev)

    async def company_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.flowing.wait()
            if len(self.companies) < self.rates.max_companies and self.rng.random() < 0.5:
                await self.register_company()
            else:
                await self.update_company()
            await _pause(stop, 1 / self.rates.companies)

    # --- projects ---

    def project_body(self, *, unique: str | None = None, template: dict[str, Any] | None = None) -> dict[str, Any]:
        template = template or self.rng.choice(self.templates)
        sought = list(template["capabilities"][:3])
        if unique:
            sought = [canary_capability(unique), *sought[:2]]
        return {
            "title": f"Research on {template['domains'][0].replace('-', ' ')} {uuid.uuid4().hex[:6]}",
            "summary": with_rev(" ".join(sought), 0),
            "programme": "FSDB",
            "institute": INSTITUTE,
            "domains": template["domains"][:2],
            "sought_capabilities": sought,
            "partners_wanted": 4,
            "contact_email": "lead@chaos-institute.example",
            "deadline": (date.today() + timedelta(days=365)).isoformat(),
        }

    async def post_project(self, *, unique: str | None = None, template: dict[str, Any] | None = None) -> str | None:
        body = self.project_body(unique=unique, template=template)
        r = await self._request("post", "POST", "projects", "/projects", token=self.institute_token, json=body)
        if r is None:
            return None
        project_id = str(r.json()["id"])
        self.ledger.ack("project", project_id, 0)
        self.ledger.posted_at[project_id] = time.time()
        if not unique:  # a canary project is neither edited nor closed by the load
            self.projects[project_id] = 0
        return project_id

    async def edit_project(self) -> None:
        project_id = self.rng.choice(list(self.projects))
        rev = self.projects[project_id] + 1
        self.projects[project_id] = rev
        summary = with_rev(
            f"Revised scope {rev}: " + " ".join(self.rng.choice(self.templates)["capabilities"][:2]), rev
        )
        r = await self._request(
            "edit",
            "PATCH",
            "projects",
            f"/projects/{project_id}",
            token=self.institute_token,
            json={"summary": summary},
        )
        if r is not None:
            self.ledger.ack("project", project_id, rev)

    async def close_project(self) -> None:
        project_id = self.rng.choice(list(self.projects))
        rev = self.projects.pop(project_id) + 1  # no write to this key follows
        r = await self._request(
            "close", "POST", "projects", f"/projects/{project_id}/close", token=self.institute_token
        )
        if r is not None:
            self.ledger.ack("project", project_id, rev, closes=True)

    async def project_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.flowing.wait()
            # Below the cap: post or edit; at the cap: close or edit (the open set stays near the cap).
            if self.rng.random() < 0.4 or not self.projects:
                if len(self.projects) < self.rates.max_open_projects:
                    await self.post_project()
                else:
                    await self.close_project()
            else:
                await self.edit_project()
            await _pause(stop, 1 / self.rates.projects)

    # --- calls ---

    async def poll_calls(self) -> bool:
        """Change the portal, ask the watcher to poll it; on 2xx every call's current revision is acked.

        One poll at a time (the load's and the canary's): a change made while another poll is reading
        the portal would be acknowledged for a revision that poll never saw.
        """
        async with self._polling:
            snapshot = self.calls.change()
            r = await self._request("poll", "POST", "calls", "/calls/poll", token=self.endpoints.admin_token)
        if r is None:
            return False
        for call_id, (rev, closed) in snapshot.items():
            self.ledger.ack("call", call_id, rev, closes=closed)
            if not closed:
                self.calls.seen_open.add(call_id)
        return True

    async def call_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.flowing.wait()
            await self.poll_calls()
            await _pause(stop, 1 / self.rates.call_polls)

    async def back_pressure(self, stop: asyncio.Event, lag: Callable[[], Awaitable[dict[str, int]]]) -> None:
        """Pause the loops while a consumer group is behind (see LAG_LIMITS); count the paused time."""
        paused_since: float | None = None
        while not stop.is_set():
            try:
                behind = await lag()
            except Exception as exc:  # the cluster is being broken on purpose: keep the last decision
                log.info("back-pressure: lag unknown (%r)", exc)
                behind = None
            if behind is not None:
                over = any(behind.get(g, 0) > limit for g, limit in LAG_LIMITS.items())
                under = all(behind.get(g, 0) <= limit // 2 for g, limit in LAG_LIMITS.items())
                if over and self.flowing.is_set():
                    self.flowing.clear()
                    paused_since = time.monotonic()
                    log.info("load paused: consumers behind %s", {g: behind.get(g, 0) for g in LAG_LIMITS})
                elif under and not self.flowing.is_set():
                    self.flowing.set()
                    if paused_since is not None:
                        self.paused_s += time.monotonic() - paused_since
                    paused_since = None
            await _pause(stop, 3.0)
        if paused_since is not None:
            self.paused_s += time.monotonic() - paused_since
        self.flowing.set()

    async def run(self, stop: asyncio.Event, lag: Callable[[], Awaitable[dict[str, int]]]) -> None:
        loops: list[Awaitable[None]] = [
            self.company_loop(stop),
            self.project_loop(stop),
            self.call_loop(stop),
            self.back_pressure(stop, lag),
        ]
        await asyncio.gather(*loops)


class PortalCalls:
    """A replayed EU portal whose EDF topics appear, change and close while the load runs."""

    def __init__(self, portal: ReplayServer, rng: random.Random, *, max_open: int) -> None:
        self.portal = portal
        self.rng = rng
        self.max_open = max_open
        self.templates = load_rows(DEFAULT_DATA)
        self.rows: dict[str, dict[str, Any]] = {}
        self.revs: dict[str, int] = {}
        self.closed: set[str] = set()
        # Calls an acknowledged poll saw open: only these may close. One closed before the watcher ever
        # saw it open is stored without an event, by design (services/calls/use_cases.py).
        self.seen_open: set[str] = set()
        self._n = 0
        for _ in range(4):
            self._add()
        self.portal.state.set_rows(list(self.rows.values()))

    def _add(self) -> None:
        self._n += 1
        row = copy.deepcopy(self.rng.choice(self.templates))
        call_id = f"EDF-2027-CHAOS-{self._n:04d}"
        meta = row["metadata"]
        meta["identifier"] = [call_id]
        meta["status"] = ["31094502"]
        deadline = datetime.now(UTC) + timedelta(days=400)
        meta["deadlineDate"] = [deadline.strftime("%Y-%m-%dT00:00:00.000+0000")]
        meta["title"] = [with_rev(meta["title"][0], 0)]
        self.rows[call_id] = row
        self.revs[call_id] = 0

    def change(self) -> dict[str, tuple[int, bool]]:
        """Add a topic, retitle one or two, close one now and then; returns every call's (rev, closed)."""
        self._add()
        open_ids = [c for c in self.rows if c not in self.closed]
        for call_id in self.rng.sample(open_ids, k=min(2, len(open_ids))):
            rev = self.revs[call_id] + 1
            self.revs[call_id] = rev
            meta = self.rows[call_id]["metadata"]
            meta["title"] = [with_rev(meta["title"][0], rev)]
        closable = [c for c in open_ids if c in self.seen_open]
        if len(open_ids) > self.max_open and closable:
            call_id = self.rng.choice(closable)
            self.closed.add(call_id)
            self.revs[call_id] += 1
            self.rows[call_id]["metadata"]["status"] = ["31094503"]
        self.portal.state.set_rows(list(self.rows.values()))
        return {c: (self.revs[c], c in self.closed) for c in self.rows}


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
