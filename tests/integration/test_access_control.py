"""The access table, walked: every role, endpoint and own/other resource gets the answer the table says.

The six services run in-process on real PostgreSQL databases; the four that are not the registry
resolve tokens through the registry's ``POST /auth/introspect`` exactly as deployed (only the HTTP
transport is in-process). Each case checks the status *and* the body: a refused call is 401 (no
token) or 403/404 and carries none of the other organisation's data; an allowed read carries it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from services.alerts.bootstrap import build as build_alerts
from services.alerts.delivery_models import AlertLogEntry, Delivery
from services.alerts.models import Alert
from services.alerts.settings import AlertsSettings
from services.calls.bootstrap import build as build_calls
from services.calls.models import CallSuggestions
from services.calls.replay.server import ReplayServer, run_replay_server
from services.calls.settings import CallsSettings
from services.consortia.bootstrap import build as build_consortia
from services.consortia.models import CompanyView, Consortium, Invitation
from services.consortia.models import TargetView as ConsortiaTarget
from services.consortia.settings import ConsortiaSettings
from services.matching.bootstrap import build as build_matching
from services.matching.models import SuggestionSet, TargetView
from services.matching.settings import MatchingSettings
from services.projects.bootstrap import build as build_projects
from services.projects.models import ProjectConsortia, ProjectSuggestions
from services.projects.settings import ProjectsSettings
from services.registry.bootstrap import build as build_registry
from services.registry.settings import RegistrySettings
from shared.auth import (
    ACCESS_TABLE,
    CALLERS,
    Access,
    AuthGuard,
    AuthSettings,
    Caller,
    Endpoint,
    FailureLimiter,
    RegistryIntrospection,
    allowed,
    is_open_path,
)
from shared.events.alerts import AlertRaised
from shared.events.base import envelope
from shared.events.suggestions import MatchReasons
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, KafkaBroker, topic_prefix

pytestmark = pytest.mark.infra

SERVICES = ("registry", "projects", "calls", "matching", "alerts", "consortia")
TAG = uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------- the world


@dataclass
class Actor:
    role: Caller
    token: str | None = None
    account_id: str | None = None
    company_id: str | None = None
    institute: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class World:
    apps: dict[str, FastAPI]
    runtimes: dict[str, ServiceRuntime]
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> Actor:
        return self.actors["admin"]

    async def call(self, service: str, method: str, url: str, actor: Actor, body: Any = None) -> httpx.Response:
        return await self.clients[service].request(method, url, json=body, headers=actor.headers())

    async def new_company(self, label: str = "Fresh") -> Actor:
        """Self-register a company (no token): the answer carries its account and token."""
        tag = uuid.uuid4().hex[:8]
        body = company_body(f"{label} {tag}", f"{tag}@fresh.example")
        response = await self.call("registry", "POST", "/companies", Actor("anonymous"), body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Actor("company", data["api_token"], data["account_id"], company_id=data["id"])

    async def new_account(self, role: Caller, name: str | None = None) -> Actor:
        if role == "company":
            return await self.new_company()
        name = name or f"{role.title()} {uuid.uuid4().hex[:8]}"
        response = await self.call("registry", "POST", "/accounts", self.admin, {"role": role, "name": name})
        assert response.status_code == 201, response.text
        data = response.json()
        return Actor(role, data["api_token"], data["id"], institute=data["institute"])

    async def new_delivery(self, n: str, *, title: str, error: str) -> str:
        """An alert of company ``n`` (inbox, alert log) and its failed e-mail delivery: what Kafka would have left."""
        company_id = str(self.actors[f"company{n}"].company_id)
        alert_id, target = str(uuid.uuid4()), str(uuid.uuid4())
        raised = AlertRaised(
            alert_id=alert_id,
            company_id=company_id,
            target_type="project",
            target_id=target,
            target_title=title,
            programme="FSDB",
            score=0.5,
            rank=1,
            reasons=MatchReasons(summary=title),
            raised_at=datetime.now(UTC),
        )
        delivery = Delivery(
            alert_id=alert_id, company_id=company_id, channel="email", status="failed", last_error=error
        )
        async with self.runtimes["alerts"].db.sessions() as s:
            s.add(
                Alert(
                    id=alert_id,
                    company_id=company_id,
                    target_type="project",
                    target_id=target,
                    target_title=title,
                    programme="FSDB",
                    score=0.5,
                    rank=1,
                    reasons={},
                    source_event_id=str(uuid.uuid4()),
                )
            )
            seq = next(SEQUENCE)
            event = envelope(raised, source="alerts", subject=company_id).model_dump_json()
            s.add(AlertLogEntry(seq=seq, alert_id=alert_id, company_id=company_id, event=event))
            s.add(delivery)
            await s.commit()
        return delivery.id

    async def new_draft(
        self,
        lead: Actor,
        *,
        members: tuple[str, ...] | list[str] = (),
        pending: tuple[str, ...] = (),
        message: str = "",
    ) -> str:
        """A draft led by ``lead``'s organisation with companies n accepted / pending, as the API would build it."""
        n = "2" if lead.institute == self.actors["institute2"].institute or lead is self.actors.get("company2") else "1"
        if lead.role == "company":
            kind, lead_id = "company", str(lead.company_id)
        else:
            kind, lead_id = "institute", str(lead.institute)
        consortium = Consortium(
            target_type="project",
            target_id=self.ids[f"p{n}"],
            target_title="Counter-drone",
            programme="FSDB",
            lead_kind=kind,
            lead_id=lead_id,
            lead_name=lead_id,
        )
        async with self.runtimes["consortia"].db.sessions() as s:
            s.add(consortium)
            for who, status in [*((m, "accepted") for m in members), *((m, "pending") for m in pending)]:
                invitation = Invitation(
                    consortium_id=consortium.id,
                    company_id=str(self.actors[f"company{who}"].company_id),
                    message=message,
                )
                invitation.set_status(status)  # type: ignore[arg-type]
                s.add(invitation)
            await s.commit()
        return consortium.id

    async def new_invitation(self, lead: Actor, invitee: str, message: str) -> str:
        """A pending invitation of company ``invitee`` into a fresh draft led by ``lead``."""
        draft = await self.new_draft(lead, pending=(invitee,), message=message)
        async with self.runtimes["consortia"].db.sessions() as s:
            return str((await s.exec(select(Invitation.id).where(Invitation.consortium_id == draft))).one())

    async def new_project(self, owner: Actor, contact: str | None = None) -> str:
        body = project_body(owner.institute or "Admin Institute", contact or f"{uuid.uuid4().hex[:8]}@lab.example")
        response = await self.call("projects", "POST", "/projects", owner, body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def profile(company_id: str, name: str) -> dict[str, Any]:
    """A company's public profile as companies.v1 carries it."""
    return {
        "id": company_id,
        "name": name,
        "country": "BE",
        "city": "Leuven",
        "organisation_type": "company",
        "size": "small",
        "domains": ["aviation-counter-uas"],
        "capabilities": ["Radar detection of small drones"],
    }


def company_body(name: str, contact: str) -> dict[str, Any]:
    return {
        "name": name,
        "country": "BE",
        "city": "Leuven",
        "size": "small",
        "domains": ["aviation-counter-uas"],
        "capabilities": ["Radar detection of small drones"],
        "contact_email": contact,
    }


def project_body(institute: str, contact: str) -> dict[str, Any]:
    return {
        "title": f"Counter-drone sensing {uuid.uuid4().hex[:6]}",
        "summary": "Detect small drones with radar.",
        "programme": "FSDB",
        "institute": institute,
        "domains": ["aviation-counter-uas"],
        "sought_capabilities": ["Radar detection of small drones"],
        "deadline": (date.today() + timedelta(days=90)).isoformat(),
        "contact_email": contact,
    }


def suggestion(marker: str) -> dict[str, Any]:
    return {
        "company_id": str(uuid.uuid4()),
        "company_name": marker,
        "country": "BE",
        "rank": 1,
        "score": 0.5,
        "reasons": {"summary": marker},
    }


def proposal(marker: str) -> dict[str, Any]:
    member = {"company_id": str(uuid.uuid4()), "company_name": marker, "country": "BE", "role": "coordinator"}
    return {"rank": 1, "score": 0.5, "members": [member], "rules": []}


# The other organisation's private data; a refused call must never carry any of it.
SECRET = {
    "c1.contact": f"c1-{TAG}@one.example",
    "c2.contact": f"c2-{TAG}@two.example",
    "c1.keyword": f"c1kw{TAG}",
    "c2.keyword": f"c2kw{TAG}",
    "c1.alert": f"c1 alert {TAG}",
    "c2.alert": f"c2 alert {TAG}",
    "p1.contact": f"p1-{TAG}@lab-one.example",
    "p2.contact": f"p2-{TAG}@lab-two.example",
    "p1.suggestion": f"p1 suggestion {TAG}",
    "p2.suggestion": f"p2 suggestion {TAG}",
    "p1.consortium": f"p1 consortium {TAG}",
    "p2.consortium": f"p2 consortium {TAG}",
    "m1.suggestion": f"m1 suggestion {TAG}",
    "m2.suggestion": f"m2 suggestion {TAG}",
    "m1.consortium": f"m1 consortium {TAG}",
    "m2.consortium": f"m2 consortium {TAG}",
    "call.suggestion": f"call suggestion {TAG}",
    "call.consortium": f"call consortium {TAG}",
    "c1.mail": f"c1-alerts-{TAG}@one.example",
    "c2.mail": f"c2-alerts-{TAG}@two.example",
    "c1.delivery": f"c1 delivery error {TAG}",
    "c2.delivery": f"c2 delivery error {TAG}",
    "k2.message": f"k2 invitation {TAG}",
}
SEQUENCE = itertools.count(1)


@pytest.fixture(scope="module")
def portal() -> Iterator[ReplayServer]:
    with run_replay_server() as server:
        yield server


@pytest.fixture(scope="module")
async def world(pg_admin_url: str, portal: ReplayServer, kafka_broker: KafkaBroker) -> AsyncIterator[World]:
    """Six services on their own databases, two organisations of each kind, and data for each."""
    databases = Databases(pg_admin_url)
    # Only GET /ops/dead-letters talks to the broker here (no runtime is started).
    kafka = {"kafka": KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap, TOPIC_PREFIX=topic_prefix())}  # type: ignore[call-arg]
    built = {
        "registry": build_registry(RegistrySettings(database_url=databases.create("registry"), **kafka)),
        "projects": build_projects(ProjectsSettings(database_url=databases.create("projects"), **kafka)),
        "calls": build_calls(
            CallsSettings(
                database_url=databases.create("calls"), ft_search_url=portal.endpoint, poll_on_start=False, **kafka
            )
        ),
        "matching": build_matching(MatchingSettings(database_url=databases.create("matching"), **kafka)),
        "alerts": build_alerts(AlertsSettings(database_url=databases.create("alerts"), **kafka)),
        "consortia": build_consortia(ConsortiaSettings(database_url=databases.create("consortia"), **kafka)),
    }
    w = World(apps={n: app for n, (app, _) in built.items()}, runtimes={n: rt for n, (_, rt) in built.items()})
    internal = AuthSettings().internal_secret
    registry_transport = httpx.ASGITransport(w.apps["registry"])
    for name, app in w.apps.items():
        guard: AuthGuard = app.state.auth
        guard.limiter = FailureLimiter(100_000)  # this walk sends no bad tokens; the limit has its own test
        if name != "registry":  # introspect at the in-process registry, as deployed but without a socket
            guard.resolver = RegistryIntrospection("http://registry", internal, transport=registry_transport)
        await w.runtimes[name].db.create_tables()
        w.clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}")
    try:
        await _populate(w)
        yield w
    finally:
        for name, client in w.clients.items():
            await client.aclose()
            await w.apps[name].state.auth.aclose()
            await w.runtimes[name].db.dispose()
        databases.drop_all()


async def _populate(w: World) -> None:
    w.actors["anonymous"] = Actor("anonymous")
    w.actors["admin"] = Actor("admin", AuthSettings().admin_secret, "admin")
    for n in ("1", "2"):
        body = company_body(f"Access {n} {TAG}", SECRET[f"c{n}.contact"])
        response = await w.call("registry", "POST", "/companies", w.actors["anonymous"], body)
        assert response.status_code == 201, response.text
        data = response.json()
        w.actors[f"company{n}"] = Actor("company", data["api_token"], data["account_id"], company_id=data["id"])
        w.actors[f"institute{n}"] = await w.new_account("institute", f"Institute {n} {TAG}")
        w.ids[f"p{n}"] = await w.new_project(w.actors[f"institute{n}"], SECRET[f"p{n}.contact"])
    w.actors["integrator1"] = await w.new_account("integrator")
    for n in ("1", "2"):
        company = w.actors[f"company{n}"]
        response = await w.call(
            "alerts", "PUT", f"/subscriptions/{company.company_id}", company, {"keywords": [SECRET[f"c{n}.keyword"]]}
        )
        assert response.status_code == 200, response.text
    poll = await w.call("calls", "POST", "/calls/poll", w.admin)
    assert poll.status_code == 200, poll.text
    calls = await w.call("calls", "GET", "/calls?limit=1", w.admin)
    w.ids["call"] = calls.json()["items"][0]["id"]
    # What Kafka would have delivered: suggestions, consortia and alerts with recognisable markers.
    now = datetime.now(UTC)
    async with w.runtimes["projects"].db.sessions() as s:
        for n in ("1", "2"):
            pid = w.ids[f"p{n}"]
            s.add(
                ProjectSuggestions(
                    project_id=pid,
                    event_id=str(uuid.uuid4()),
                    algorithm_version="t",
                    computed_at=now,
                    suggestions=[suggestion(SECRET[f"p{n}.suggestion"])],
                )
            )
            s.add(
                ProjectConsortia(
                    project_id=pid,
                    event_id=str(uuid.uuid4()),
                    algorithm_version="t",
                    computed_at=now,
                    proposals=[proposal(SECRET[f"p{n}.consortium"])],
                )
            )
        await s.commit()
    async with w.runtimes["matching"].db.sessions() as s:
        for n in ("1", "2"):
            pid = w.ids[f"p{n}"]
            institute = w.actors[f"institute{n}"].institute
            s.add(TargetView(target_type="project", target_id=pid, target={"id": pid, "institute": institute}))
            s.add(
                SuggestionSet(
                    target_type="project",
                    target_id=pid,
                    algorithm_version="t",
                    suggestions=[suggestion(SECRET[f"m{n}.suggestion"])],
                    consortia=[proposal(SECRET[f"m{n}.consortium"])],
                )
            )
        s.add(
            SuggestionSet(
                target_type="call",
                target_id=w.ids["call"],
                algorithm_version="t",
                suggestions=[suggestion(SECRET["call.suggestion"])],
                consortia=[proposal(SECRET["call.consortium"])],
            )
        )
        await s.commit()
    async with w.runtimes["calls"].db.sessions() as s:
        s.add(
            CallSuggestions(
                call_id=w.ids["call"],
                algorithm_version="t",
                computed_at=now,
                event_id=str(uuid.uuid4()),
                payload={"suggestions": [suggestion(SECRET["call.suggestion"])]},
            )
        )
        await s.commit()
    for n in ("1", "2"):
        company = w.actors[f"company{n}"]
        email = {"address": SECRET[f"c{n}.mail"], "mode": "immediate"}
        response = await w.call("alerts", "PUT", f"/subscriptions/{company.company_id}/channels/email", company, email)
        assert response.status_code == 200, response.text
        w.ids[f"d{n}"] = await w.new_delivery(n, title=SECRET[f"c{n}.alert"], error=SECRET[f"c{n}.delivery"])
    # What companies.v1 and projects.v1 would have told the consortia service.
    async with w.runtimes["consortia"].db.sessions() as s:
        for n in ("1", "2"):
            cid = str(w.actors[f"company{n}"].company_id)
            s.add(CompanyView(company_id=cid, name=f"Access {n} {TAG}", profile=profile(cid, f"Access {n} {TAG}")))
            pid = w.ids[f"p{n}"]
            facts = {"title": "Counter-drone", "programme": "FSDB", "institute": w.actors[f"institute{n}"].institute}
            s.add(
                ConsortiaTarget(
                    target_type="project", target_id=pid, title="x", programme="FSDB", status="open", facts=facts
                )
            )
        await s.commit()
    w.ids["k2"] = await w.new_draft(w.actors["institute2"], members=["2"], message=SECRET["k2.message"])


# --------------------------------------------------------------------------- one request per table row


@dataclass
class Req:
    service: str
    method: str
    url: str
    body: Any = None
    caller: Actor | None = None
    """Who calls, when the case needs a fresh caller (e.g. a company that deletes itself)."""
    ok: int = 200
    secrets: list[str] = field(default_factory=list)
    """Never in the answer when refused."""
    shown: list[str] = field(default_factory=list)
    """In the answer when allowed."""
    hidden: list[str] = field(default_factory=list)
    """Never in the answer, allowed or not (private fields of public reads)."""
    stream: bool = False
    """Server-Sent Events: read the status and the first events, then hang up."""


Builder = Callable[[World, Actor, bool], Awaitable[Req]]
BUILDERS: dict[tuple[str, str, str], tuple[str | None, Builder]] = {}


def builds(service: str, method: str, path: str, *, owned_by: str | None = None) -> Callable[[Builder], Builder]:
    """Register how to call one row of the table; ``owned_by``: whose resource "own" means."""

    def register(fn: Builder) -> Builder:
        BUILDERS[(service, method, path)] = (owned_by, fn)
        return fn

    return register


def company_n(caller: Actor, own: bool) -> str:
    return "1" if own else "2"


def sees_contact(caller: Actor, own: bool) -> bool:
    return caller.role == "admin" or own


# registry


@builds("registry", "POST", "/companies")
async def _register(w: World, caller: Actor, own: bool) -> Req:
    tag = uuid.uuid4().hex[:8]
    return Req(
        "registry", "POST", "/companies", company_body(f"New {tag}", f"{tag}@new.example"), ok=201, shown=["api_token"]
    )


@builds("registry", "GET", "/companies")
async def _list_companies(w: World, caller: Actor, own: bool) -> Req:
    mine = caller.company_id == w.actors["company1"].company_id
    admin = caller.role == "admin"
    shown = [SECRET["c1.contact"]] if mine or admin else []
    shown += [SECRET["c2.contact"]] if admin else []
    hidden = [c for c in (SECRET["c1.contact"], SECRET["c2.contact"]) if c not in shown]
    return Req("registry", "GET", f"/companies?q={TAG}&limit=200", shown=shown, hidden=hidden)


@builds("registry", "GET", "/companies/{company_id}", owned_by="company")
async def _get_company(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    contact = SECRET[f"c{n}.contact"]
    req = Req("registry", "GET", f"/companies/{w.actors[f'company{n}'].company_id}", shown=[f"Access {n} {TAG}"])
    (req.shown if sees_contact(caller, own) else req.hidden).append(contact)
    return req


@builds("registry", "PATCH", "/companies/{company_id}", owned_by="company")
async def _patch_company(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    return Req(
        "registry",
        "PATCH",
        f"/companies/{w.actors[f'company{n}'].company_id}",
        {"city": "Gent"},
        secrets=[SECRET[f"c{n}.contact"]],
    )


@builds("registry", "DELETE", "/companies/{company_id}", owned_by="company")
async def _delete_company(w: World, caller: Actor, own: bool) -> Req:
    victim = await w.new_company()  # never one of the fixed companies: an allowed delete really deletes
    return Req("registry", "DELETE", f"/companies/{victim.company_id}", caller=victim if own else None, ok=204)


@builds("registry", "POST", "/accounts")
async def _create_account(w: World, caller: Actor, own: bool) -> Req:
    body = {"role": "integrator", "name": f"Agency {uuid.uuid4().hex[:8]}"}
    return Req("registry", "POST", "/accounts", body, ok=201, secrets=["bgt_", "api_token"], shown=["bgt_"])


@builds("registry", "GET", "/accounts")
async def _list_accounts(w: World, caller: Actor, own: bool) -> Req:
    other = str(w.actors["company2"].account_id)
    return Req("registry", "GET", "/accounts?limit=200", secrets=[other], shown=[other])


@builds("registry", "GET", "/accounts/me")
async def _me(w: World, caller: Actor, own: bool) -> Req:
    return Req("registry", "GET", "/accounts/me", shown=[str(caller.account_id)])


def _account_of(w: World, caller: Actor, own: bool) -> str:
    return str(caller.account_id if own else w.actors["company2"].account_id)


@builds("registry", "GET", "/accounts/{account_id}", owned_by="account")
async def _get_account(w: World, caller: Actor, own: bool) -> Req:
    account = _account_of(w, caller, own)
    other_company = str(w.actors["company2"].company_id)
    return Req("registry", "GET", f"/accounts/{account}", shown=[account], secrets=[other_company])


@builds("registry", "POST", "/accounts/{account_id}/tokens/rotate", owned_by="account")
async def _rotate(w: World, caller: Actor, own: bool) -> Req:
    fresh = await w.new_account(caller.role if own else "integrator")  # fixed actors keep their tokens
    return Req(
        "registry",
        "POST",
        f"/accounts/{fresh.account_id}/tokens/rotate",
        caller=fresh if own else None,
        secrets=["bgt_"],
        shown=["bgt_"],
    )


@builds("registry", "DELETE", "/accounts/{account_id}/tokens", owned_by="account")
async def _revoke(w: World, caller: Actor, own: bool) -> Req:
    fresh = await w.new_account(caller.role if own else "integrator")
    return Req("registry", "DELETE", f"/accounts/{fresh.account_id}/tokens", caller=fresh if own else None, ok=204)


@builds("registry", "POST", "/auth/introspect")
async def _introspect(w: World, caller: Actor, own: bool) -> Req:
    other = w.actors["company2"]
    return Req(
        "registry",
        "POST",
        "/auth/introspect",
        {"token": other.token},
        secrets=[str(other.account_id), str(other.company_id), "active"],
    )


# projects


def project_n(own: bool) -> str:
    return "1" if own else "2"


@builds("projects", "POST", "/projects")
async def _post_project(w: World, caller: Actor, own: bool) -> Req:
    body = project_body(caller.institute or "Admin Institute", f"{uuid.uuid4().hex[:6]}@posted.example")
    return Req("projects", "POST", "/projects", body, ok=201, shown=[body["contact_email"]])


@builds("projects", "GET", "/projects")
async def _list_projects(w: World, caller: Actor, own: bool) -> Req:
    mine = caller.institute == w.actors["institute1"].institute and caller.role == "institute"
    admin = caller.role == "admin"
    shown = [SECRET["p1.contact"]] if mine or admin else []
    shown += [SECRET["p2.contact"]] if admin else []
    hidden = [c for c in (SECRET["p1.contact"], SECRET["p2.contact"]) if c not in shown]
    return Req("projects", "GET", "/projects?limit=200", shown=shown, hidden=hidden)


@builds("projects", "GET", "/projects/{project_id}", owned_by="institute")
async def _get_project(w: World, caller: Actor, own: bool) -> Req:
    n = project_n(own)
    req = Req("projects", "GET", f"/projects/{w.ids[f'p{n}']}", shown=[w.ids[f"p{n}"]])
    (req.shown if sees_contact(caller, own) else req.hidden).append(SECRET[f"p{n}.contact"])
    return req


@builds("projects", "PATCH", "/projects/{project_id}", owned_by="institute")
async def _patch_project(w: World, caller: Actor, own: bool) -> Req:
    n = project_n(own)
    return Req(
        "projects", "PATCH", f"/projects/{w.ids[f'p{n}']}", {"partners_wanted": 4}, secrets=[SECRET[f"p{n}.contact"]]
    )


@builds("projects", "POST", "/projects/{project_id}/close", owned_by="institute")
async def _close_project(w: World, caller: Actor, own: bool) -> Req:
    project = await w.new_project(w.actors["institute1" if own else "institute2"], f"{TAG}-closing@lab.example")
    return Req("projects", "POST", f"/projects/{project}/close", secrets=[f"{TAG}-closing@lab.example"])


@builds("projects", "GET", "/projects/{project_id}/suggestions", owned_by="institute")
async def _project_suggestions(w: World, caller: Actor, own: bool) -> Req:
    n = project_n(own)
    marker = SECRET[f"p{n}.suggestion"]
    return Req("projects", "GET", f"/projects/{w.ids[f'p{n}']}/suggestions", secrets=[marker], shown=[marker])


@builds("projects", "GET", "/projects/{project_id}/consortia", owned_by="institute")
async def _project_consortia(w: World, caller: Actor, own: bool) -> Req:
    n = project_n(own)
    marker = SECRET[f"p{n}.consortium"]
    return Req("projects", "GET", f"/projects/{w.ids[f'p{n}']}/consortia", secrets=[marker], shown=[marker])


# calls


@builds("calls", "POST", "/calls/poll")
async def _poll(w: World, caller: Actor, own: bool) -> Req:
    return Req("calls", "POST", "/calls/poll", secrets=["unchanged"], shown=["unchanged"])


@builds("calls", "GET", "/calls")
async def _calls(w: World, caller: Actor, own: bool) -> Req:
    return Req("calls", "GET", "/calls", shown=[w.ids["call"]])


@builds("calls", "GET", "/calls/{call_id}")
async def _call(w: World, caller: Actor, own: bool) -> Req:
    return Req("calls", "GET", f"/calls/{w.ids['call']}", shown=[w.ids["call"]])


@builds("calls", "GET", "/calls/{call_id}/suggestions")
async def _call_suggestions(w: World, caller: Actor, own: bool) -> Req:
    marker = SECRET["call.suggestion"]
    return Req("calls", "GET", f"/calls/{w.ids['call']}/suggestions", secrets=[marker], shown=[marker])


# every service: parked outbox rows (admin only; an unknown row is a 404 for the admin)


def _parked(service: str, method: str, path: str) -> None:
    async def build(w: World, caller: Actor, own: bool) -> Req:
        url = path.replace("{outbox_id}", "999999")
        return Req(service, method, url, ok=404 if "{outbox_id}" in path else 200)

    builds(service, method, path)(build)


for _service in SERVICES:
    _parked(_service, "GET", "/admin/outbox/parked")
    _parked(_service, "POST", "/admin/outbox/parked/retry")
    _parked(_service, "POST", "/admin/outbox/parked/{outbox_id}/retry")


# matching


def _matching(kind: str, target: str) -> Builder:
    item = "suggestion" if kind == "suggestions" else "consortium"

    async def build(w: World, caller: Actor, own: bool) -> Req:
        if target == "call":
            target_id, marker = w.ids["call"], SECRET[f"call.{item}"]
        else:
            n = project_n(own)
            target_id, marker = w.ids[f"p{n}"], SECRET[f"m{n}.{item}"]
        return Req("matching", "GET", f"/{kind}/{target}/{target_id}", secrets=[marker], shown=[marker])

    return build


for _kind in ("suggestions", "consortia"):
    builds("matching", "GET", f"/{_kind}/project/{{target_id}}", owned_by="institute")(_matching(_kind, "project"))
    builds("matching", "GET", f"/{_kind}/call/{{target_id}}")(_matching(_kind, "call"))


# alerts


@builds("alerts", "PUT", "/subscriptions/{company_id}", owned_by="company")
async def _put_subscription(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    keyword = SECRET[f"c{n}.keyword"]  # the same subscription again: an allowed write changes nothing
    return Req(
        "alerts",
        "PUT",
        f"/subscriptions/{w.actors[f'company{n}'].company_id}",
        {"keywords": [keyword]},
        shown=[keyword],
    )


@builds("alerts", "GET", "/subscriptions/{company_id}", owned_by="company")
async def _get_subscription(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    keyword = SECRET[f"c{n}.keyword"]
    return Req(
        "alerts", "GET", f"/subscriptions/{w.actors[f'company{n}'].company_id}", secrets=[keyword], shown=[keyword]
    )


@builds("alerts", "GET", "/companies/{company_id}/alerts", owned_by="company")
async def _alerts(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    marker = SECRET[f"c{n}.alert"]
    return Req(
        "alerts", "GET", f"/companies/{w.actors[f'company{n}'].company_id}/alerts", secrets=[marker], shown=[marker]
    )


def _own_company_id(w: World, caller: Actor, own: bool) -> tuple[str, str]:
    n = company_n(caller, own)
    return n, str(w.actors[f"company{n}"].company_id)


@builds("alerts", "GET", "/subscriptions/{company_id}/channels", owned_by="company")
async def _channels(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    mail = SECRET[f"c{n}.mail"]
    return Req("alerts", "GET", f"/subscriptions/{company_id}/channels", secrets=[mail], shown=[mail])


@builds("alerts", "PUT", "/subscriptions/{company_id}/channels/email", owned_by="company")
async def _put_email(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    body = {"address": SECRET[f"c{n}.mail"], "mode": "immediate"}  # as it was: an allowed write changes nothing
    return Req("alerts", "PUT", f"/subscriptions/{company_id}/channels/email", body, shown=[SECRET[f"c{n}.mail"]])


@builds("alerts", "PUT", "/subscriptions/{company_id}/channels/webhook", owned_by="company")
async def _put_webhook(w: World, caller: Actor, own: bool) -> Req:
    _, company_id = _own_company_id(w, caller, own)
    body = {"url": f"https://hooks.example/{uuid.uuid4().hex[:8]}"}
    return Req(
        "alerts", "PUT", f"/subscriptions/{company_id}/channels/webhook", body, secrets=['"secret"'], shown=['"secret"']
    )


@builds("alerts", "DELETE", "/subscriptions/{company_id}/channels/{channel}", owned_by="company")
async def _delete_channel(w: World, caller: Actor, own: bool) -> Req:
    _, company_id = _own_company_id(w, caller, own)
    hook = {"url": "https://hooks.example/to-delete"}  # there is one to delete, whoever may
    response = await w.call("alerts", "PUT", f"/subscriptions/{company_id}/channels/webhook", w.admin, hook)
    assert response.status_code == 200, response.text
    return Req("alerts", "DELETE", f"/subscriptions/{company_id}/channels/webhook", ok=204)


@builds("alerts", "GET", "/subscriptions/{company_id}/deliveries", owned_by="company")
async def _deliveries(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    marker = SECRET[f"c{n}.delivery"]
    return Req("alerts", "GET", f"/subscriptions/{company_id}/deliveries", secrets=[marker], shown=[marker])


@builds("alerts", "GET", "/deliveries/{delivery_id}", owned_by="company")
async def _delivery(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    marker = SECRET[f"c{n}.delivery"]
    return Req("alerts", "GET", f"/deliveries/{w.ids[f'd{n}']}", secrets=[marker], shown=[marker])


@builds("alerts", "POST", "/deliveries/{delivery_id}/redeliver", owned_by="company")
async def _redeliver(w: World, caller: Actor, own: bool) -> Req:
    n = company_n(caller, own)
    marker = f"redeliver {uuid.uuid4().hex[:8]}"
    delivery = await w.new_delivery(n, title=marker, error=marker)  # fresh: a redelivered one is queued
    return Req("alerts", "POST", f"/deliveries/{delivery}/redeliver", ok=202, secrets=[marker], shown=[marker])


@builds("alerts", "GET", "/companies/{company_id}/alerts/stream", owned_by="company")
async def _stream(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    marker = SECRET[f"c{n}.alert"]
    return Req(
        "alerts",
        "GET",
        f"/companies/{company_id}/alerts/stream?after=0",
        stream=True,
        secrets=[marker],
        shown=["event: ready", marker],
    )


@builds("alerts", "GET", "/companies/{company_id}/alerts/{alert_id}", owned_by="company")
async def _one_alert(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    marker = SECRET[f"c{n}.alert"]
    inbox = await w.call("alerts", "GET", f"/companies/{company_id}/alerts?limit=200", w.admin)
    alert_id = next(a["id"] for a in inbox.json()["items"] if a["target_title"] == marker)
    return Req("alerts", "GET", f"/companies/{company_id}/alerts/{alert_id}", secrets=[marker], shown=[marker])


@builds("alerts", "POST", "/subscriptions/{company_id}/channels/webhook/test", owned_by="company")
async def _test_webhook(w: World, caller: Actor, own: bool) -> Req:
    _, company_id = _own_company_id(w, caller, own)
    # A webhook to test, whoever may: a public URL (inside addresses are refused) whose name never resolves.
    hook = {"url": "https://hooks.invalid/refused"}
    response = await w.call("alerts", "PUT", f"/subscriptions/{company_id}/channels/webhook", w.admin, hook)
    assert response.status_code == 200, response.text
    return Req(
        "alerts",
        "POST",
        f"/subscriptions/{company_id}/channels/webhook/test",
        secrets=["latency_ms"],
        shown=['"ok":false'],
    )


@builds("projects", "GET", "/projects/{project_id}/suggestions/stream", owned_by="institute")
async def _project_stream(w: World, caller: Actor, own: bool) -> Req:
    n = project_n(own)
    url = f"/projects/{w.ids[f'p{n}']}/suggestions/stream"
    return Req("projects", "GET", url, stream=True, secrets=["event: ready"], shown=["event: ready"])


# consortia: "own" is a draft the caller's organisation leads (or, for members, belongs to)


def _lead_actor(w: World, caller: Actor, own: bool) -> Actor:
    return caller if own else w.actors["institute2"]


@builds("consortia", "POST", "/consortia")
async def _open_consortium(w: World, caller: Actor, own: bool) -> Req:
    body = {"target_type": "project", "target_id": w.ids["p1"]}
    return Req("consortia", "POST", "/consortia", body, ok=201, shown=[w.ids["p1"]], hidden=[SECRET["k2.message"]])


@builds("consortia", "GET", "/consortia")
async def _my_consortia(w: World, caller: Actor, own: bool) -> Req:
    return Req("consortia", "GET", "/consortia", hidden=[w.ids["k2"]])


@builds("consortia", "GET", "/consortia/{consortium_id}", owned_by="organisation")
async def _get_consortium(w: World, caller: Actor, own: bool) -> Req:
    if not own:
        marker = SECRET["k2.message"]
        return Req("consortia", "GET", f"/consortia/{w.ids['k2']}", secrets=[marker], shown=[marker])
    marker = f"own draft {uuid.uuid4().hex[:8]}"
    draft = await w.new_draft(caller, pending=("2",), message=marker)
    return Req("consortia", "GET", f"/consortia/{draft}", shown=[marker])


@builds("consortia", "POST", "/consortia/{consortium_id}/invitations", owned_by="organisation")
async def _invite(w: World, caller: Actor, own: bool) -> Req:
    draft = await w.new_draft(_lead_actor(w, caller, own), message=SECRET["k2.message"])
    fresh = str(uuid.uuid4())  # a registered company nobody invited yet: an allowed call really invites
    async with w.runtimes["consortia"].db.sessions() as s:
        s.add(CompanyView(company_id=fresh, name=f"Invitee {TAG}", profile=profile(fresh, f"Invitee {TAG}")))
        await s.commit()
    body = {"company_id": fresh, "message": "join us"}
    return Req("consortia", "POST", f"/consortia/{draft}/invitations", body, ok=201, shown=[fresh])


@builds("consortia", "DELETE", "/consortia/{consortium_id}/members/{company_id}", owned_by="organisation")
async def _remove_member(w: World, caller: Actor, own: bool) -> Req:
    if own and caller.role == "company":  # a member leaves (the draft is someone else's)
        draft = await w.new_draft(w.actors["institute2"], members=("1",))
        return Req("consortia", "DELETE", f"/consortia/{draft}/members/{caller.company_id}", ok=204)
    draft = await w.new_draft(_lead_actor(w, caller, own), members=("2",))
    return Req("consortia", "DELETE", f"/consortia/{draft}/members/{w.actors['company2'].company_id}", ok=204)


@builds("consortia", "POST", "/consortia/{consortium_id}/outcome", owned_by="organisation")
async def _outcome(w: World, caller: Actor, own: bool) -> Req:
    draft = await w.new_draft(_lead_actor(w, caller, own), members=("2",), message=SECRET["k2.message"])
    return Req(
        "consortia",
        "POST",
        f"/consortia/{draft}/outcome",
        {"status": "submitted"},
        secrets=[SECRET["k2.message"]],
        shown=["submitted"],
    )


def _invitation(action: str, method: str) -> Builder:
    async def build(w: World, caller: Actor, own: bool) -> Req:
        n = company_n(caller, own)
        marker = f"invitation {n} {uuid.uuid4().hex[:8]}"
        invitation = await w.new_invitation(w.actors["institute2"], n, marker)
        url = f"/invitations/{invitation}" + (f"/{action}" if action else "")
        shown = [marker] if action == "" else [invitation]
        return Req("consortia", method, url, {} if method == "POST" else None, secrets=[marker], shown=shown)

    return build


builds("consortia", "GET", "/invitations/{invitation_id}", owned_by="company")(_invitation("", "GET"))
builds("consortia", "POST", "/invitations/{invitation_id}/accept", owned_by="company")(_invitation("accept", "POST"))
builds("consortia", "POST", "/invitations/{invitation_id}/decline", owned_by="company")(_invitation("decline", "POST"))


@builds("consortia", "DELETE", "/invitations/{invitation_id}", owned_by="organisation")
async def _withdraw(w: World, caller: Actor, own: bool) -> Req:
    marker = f"withdraw {uuid.uuid4().hex[:8]}"
    invitation = await w.new_invitation(_lead_actor(w, caller, own), "2", marker)
    return Req("consortia", "DELETE", f"/invitations/{invitation}", secrets=[marker], shown=["withdrawn"])


@builds("consortia", "GET", "/companies/{company_id}/invitations", owned_by="company")
async def _company_invitations(w: World, caller: Actor, own: bool) -> Req:
    n, company_id = _own_company_id(w, caller, own)
    marker = f"inbox {n} {uuid.uuid4().hex[:8]}"
    await w.new_invitation(w.actors["institute2"], n, marker)
    return Req("consortia", "GET", f"/companies/{company_id}/invitations", secrets=[marker], shown=[marker])


@builds("consortia", "GET", "/projects/{project_id}/funnel", owned_by="institute")
async def _project_funnel(w: World, caller: Actor, own: bool) -> Req:
    return Req(
        "consortia",
        "GET",
        f"/projects/{w.ids[f'p{project_n(own)}']}/funnel",
        secrets=['"suggested"'],
        shown=['"suggested"'],
    )


@builds("consortia", "GET", "/companies/{company_id}/funnel", owned_by="company")
async def _company_funnel(w: World, caller: Actor, own: bool) -> Req:
    _, company_id = _own_company_id(w, caller, own)
    return Req("consortia", "GET", f"/companies/{company_id}/funnel", secrets=['"invited"'], shown=['"invited"'])


def _dead_letters(service: str) -> Builder:
    async def build(w: World, caller: Actor, own: bool) -> Req:
        return Req(service, "GET", "/ops/dead-letters", secrets=['"total"'], shown=['"total":0'])

    return build


def _parked_events(service: str) -> Builder:
    async def build(w: World, caller: Actor, own: bool) -> Req:
        return Req(service, "GET", "/ops/parked-events", secrets=['"total"'], shown=['"total":0'])

    return build


def _discard_parked(service: str) -> Builder:
    # Nothing is parked in this world: an admin gets through to the lookup (404), nobody else gets that far.
    async def build(w: World, caller: Actor, own: bool) -> Req:
        url = "/ops/parked-events/4711/discard"
        body = {"reason": "walked"}
        return Req(service, "POST", url, body=body, ok=404, secrets=["no parked event"], shown=["no parked event"])

    return build


for _service in SERVICES:
    builds(_service, "GET", "/ops/dead-letters")(_dead_letters(_service))
    builds(_service, "GET", "/ops/parked-events")(_parked_events(_service))
    builds(_service, "POST", "/ops/parked-events/{parked_id}/discard")(_discard_parked(_service))


async def open_stream(app: FastAPI, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """The status and what a Server-Sent Events response sends in its first half second, then a hang-up.

    (httpx's ASGITransport waits for the whole body, which a stream never finishes.)
    """
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("alerts", 80),
    }
    started, hang_up = asyncio.Event(), asyncio.Event()
    status: list[int] = []
    body = bytearray()

    async def receive() -> dict[str, Any]:
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            started.set()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.5)
    hang_up.set()
    try:
        await asyncio.wait_for(task, 5)
    except TimeoutError:
        task.cancel()
    return status[0], body.decode(errors="replace")


# --------------------------------------------------------------------------- the walk


def can_own(owned_by: str | None, caller: Caller) -> bool:
    if owned_by == "account":
        return caller in ("institute", "company", "integrator")
    if owned_by == "organisation":
        return caller in ("institute", "company")
    return owned_by == caller


def cases() -> list[Any]:
    out = []
    for endpoint in ACCESS_TABLE:
        owned_by = BUILDERS.get((endpoint.service, endpoint.method, endpoint.path), (None, None))[0]
        for caller in CALLERS:
            for own in (True, False) if can_own(owned_by, caller) else (False,):
                case_id = (
                    f"{endpoint.service} {endpoint.method} {endpoint.path} as {caller} on {'own' if own else 'other'}"
                )
                out.append(pytest.param(endpoint, caller, own, id=case_id))
    return out


ACTOR_OF: dict[Caller, str] = {
    "anonymous": "anonymous",
    "company": "company1",
    "institute": "institute1",
    "integrator": "integrator1",
    "admin": "admin",
}


@pytest.mark.parametrize(("endpoint", "caller", "own"), cases())
async def test_access_table(world: World, endpoint: Endpoint, caller: Caller, own: bool) -> None:
    _, build = BUILDERS[(endpoint.service, endpoint.method, endpoint.path)]
    actor = world.actors[ACTOR_OF[caller]]
    req = await build(world, actor, own)
    caller_actor = req.caller or actor
    if req.stream:
        code, text = await open_stream(world.apps[req.service], req.url, caller_actor.headers())
    else:
        response = await world.call(req.service, req.method, req.url, caller_actor, req.body)
        code, text = response.status_code, response.text
    for private in req.hidden:
        assert private not in text, f"{private!r} leaked: {text}"
    if allowed(endpoint.access, caller, own=own):
        assert code == req.ok, text
        for expected in req.shown:
            assert expected in text, f"{expected!r} missing: {text}"
        return
    if endpoint.access is Access.INTERNAL or caller == "anonymous":
        assert code == 401, text
    else:
        assert code in (403, 404), text
    for private in req.secrets:
        assert private not in text, f"{private!r} leaked in a refusal: {text}"


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) an app serves, also inside included routers."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "methods") and hasattr(route, "path"):
                found.extend((m, prefix + route.path) for m in route.methods if m != "HEAD")

    walk(list(app.routes), "")
    return found


def test_every_route_is_in_the_access_table_or_open(world: World) -> None:
    missing = []
    for service, app in world.apps.items():
        rows = [e for e in ACCESS_TABLE if e.service == service]
        for method, path in _routes(app):
            if is_open_path(path):
                continue
            if not any(e.method == method and _matches(path, e.path) for e in rows):
                missing.append(f"{service} {method} {path}")
    assert missing == [], "routes without a row in shared.auth.ACCESS_TABLE"
    assert _routes(world.apps["matching"])  # the walk found routes at all


def _matches(template: str, row_path: str) -> bool:
    """``/suggestions/{target_type}/{target_id}`` serves the rows ``/suggestions/project/{target_id}`` etc."""
    t, r = template.strip("/").split("/"), row_path.strip("/").split("/")
    return len(t) == len(r) and all(a == b or a.startswith("{") for a, b in zip(t, r, strict=True))


def test_every_row_of_the_table_is_walked() -> None:
    rows = {(e.service, e.method, e.path) for e in ACCESS_TABLE}
    assert rows == set(BUILDERS), "a row without a request in this test, or a request for no row"


# --------------------------------------------------------------------------- beyond the table


async def test_failed_authentication_is_limited_per_client_and_logged_without_the_token(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    guard: AuthGuard = world.apps["alerts"].state.auth
    saved = guard.limiter
    guard.limiter = FailureLimiter(3)
    company = world.actors["company1"]
    url = f"/subscriptions/{company.company_id}"
    bad = f"bgt_guessed-{uuid.uuid4().hex}"
    try:
        with caplog.at_level(logging.WARNING, logger="shared.auth"):
            answers = [(await world.call("alerts", "GET", url, Actor("company", bad))).status_code for _ in range(4)]
            refused = await world.call("alerts", "GET", url, company)  # even a good token, from that address
        assert answers == [401, 401, 401, 429]
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "authentication failed from 127.0.0.1: GET" in caplog.text
        assert bad not in caplog.text and bad[4:20] not in caplog.text
        guard.limiter = FailureLimiter(3)  # the minute has passed
        assert (await world.call("alerts", "GET", url, company)).status_code == 200
    finally:
        guard.limiter = saved


async def test_revocation_and_rotation_reach_the_other_services_within_the_cache_ttl(world: World) -> None:
    fresh = await world.new_company()
    url = f"/subscriptions/{fresh.company_id}"
    assert (await world.call("alerts", "PUT", url, fresh, {})).status_code == 200
    revoke = await world.call("registry", "DELETE", f"/accounts/{fresh.account_id}/tokens", fresh)
    assert revoke.status_code == 204
    assert (await world.call("registry", "GET", "/accounts/me", fresh)).status_code == 401  # at once
    assert (await world.call("alerts", "GET", url, fresh)).status_code == 200  # cached for the TTL
    resolver: RegistryIntrospection = world.apps["alerts"].state.auth.resolver
    resolver.forget()  # what the TTL does
    assert (await world.call("alerts", "GET", url, fresh)).status_code == 401
    rotated = await world.call("registry", "POST", f"/accounts/{fresh.account_id}/tokens/rotate", world.admin)
    assert rotated.status_code == 200
    fresh.token = rotated.json()["api_token"]
    assert (await world.call("alerts", "GET", url, fresh)).status_code == 200


async def test_an_institute_posts_and_renames_projects_under_its_own_name_only(world: World) -> None:
    me, other = world.actors["institute1"], world.actors["institute2"]
    body = project_body(str(other.institute), "x@lab.example")
    assert (await world.call("projects", "POST", "/projects", me, body)).status_code == 403
    own = await world.new_project(me)
    rename = await world.call("projects", "PATCH", f"/projects/{own}", me, {"institute": other.institute})
    assert rename.status_code == 403
    # Matching knows the project's institute from projects.v1 only: the name is what ownership rests on.
    assert (await world.call("projects", "GET", f"/projects/{own}/suggestions", me)).status_code == 200
    assert (await world.call("projects", "GET", f"/projects/{own}/suggestions", other)).status_code == 403


async def test_one_account_per_company_and_per_institute_name(world: World) -> None:
    company = world.actors["company1"]
    again = await world.call(
        "registry", "POST", "/accounts", world.admin, {"role": "company", "company_id": company.company_id}
    )
    assert again.status_code == 409
    name = world.actors["institute1"].institute
    twin = await world.call("registry", "POST", "/accounts", world.admin, {"role": "institute", "name": name})
    assert twin.status_code == 409
    gone = await world.call(
        "registry", "POST", "/accounts", world.admin, {"role": "company", "company_id": str(uuid.uuid4())}
    )
    assert gone.status_code == 404


async def test_a_deleted_company_loses_its_account(world: World) -> None:
    fresh = await world.new_company()
    assert (await world.call("registry", "DELETE", f"/companies/{fresh.company_id}", fresh)).status_code == 204
    assert (await world.call("registry", "GET", "/accounts/me", fresh)).status_code == 401
