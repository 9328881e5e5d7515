"""The consortia service against the real broker and PostgreSQL, with the real registry for tokens and profiles.

The registry runs in-process with its relay, so company profiles reach the consortia service as
companies.v1 events; projects and rankings are produced onto their topics as the projects and
matching services would. Every call carries a real account's token, checked by the registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from services.consortia.bootstrap import build as build_consortia
from services.consortia.models import CompanyView, Invitation, TargetRanking, TargetView
from services.consortia.settings import ConsortiaSettings
from services.registry.bootstrap import build as build_registry
from services.registry.settings import RegistrySettings
from shared.auth import AuthGuard, AuthSettings, RegistryIntrospection
from shared.events.base import envelope
from shared.events.projects import ProjectData, ProjectPosted
from shared.events.suggestions import MatchReasons, SuggestionItem, SuggestionsComputed
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, wait_for
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

INSTITUTE = f"Institute {uuid.uuid4().hex[:6]}"
RADAR = "Radar detection of small drones"
AUDIO = "Edge inference for acoustic classification"


@dataclass
class World:
    registry: httpx.AsyncClient
    consortia: httpx.AsyncClient
    runtime: ServiceRuntime
    kafka: KafkaSettings
    tokens: dict[str, str] = field(default_factory=dict)
    companies: dict[str, str] = field(default_factory=dict)
    project_id: str = ""

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who != "anonymous" else {}

    async def call(self, method: str, url: str, who: str, body: Any = None) -> httpx.Response:
        return await self.consortia.request(method, url, json=body, headers=self.as_(who))


def company(name: str, country: str, capabilities: list[str], size: str = "small") -> dict[str, Any]:
    return {
        "name": name,
        "country": country,
        "city": "Somewhere",
        "size": size,
        "domains": ["aviation-counter-uas"],
        "capabilities": capabilities,
        "contact_email": f"{uuid.uuid4().hex[:8]}@example.org",
    }


@pytest.fixture
async def world(databases: Databases, kafka_settings: KafkaSettings) -> AsyncIterator[World]:
    registry_app, registry_rt = build_registry(
        RegistrySettings(database_url=databases.create("registry"), kafka=kafka_settings, OUTBOX_POLL_INTERVAL=0.1)  # type: ignore[call-arg]
    )
    app, runtime = build_consortia(
        ConsortiaSettings(
            database_url=databases.create("consortia"),
            kafka=kafka_settings,
            OUTBOX_POLL_INTERVAL=0.1,  # type: ignore[call-arg]
        )
    )
    guard: AuthGuard = app.state.auth
    guard.resolver = RegistryIntrospection(
        "http://registry", AuthSettings().internal_secret, transport=httpx.ASGITransport(registry_app)
    )
    async with registry_rt.lifespan(), runtime.lifespan():
        await wait_for(runtime.kafka_ready.is_set, timeout=30, what="consortia connected to Kafka")
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(registry_app), base_url="http://registry") as registry,
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://consortia") as consortia,
        ):
            w = World(registry, consortia, runtime, kafka_settings)
            await _populate(w)
            yield w
        await guard.aclose()


async def _populate(w: World) -> None:
    for who, body in {
        "radar": company("Radar Works", "BE", [RADAR]),
        "audio": company("Audio Edge", "BE", [AUDIO]),
        "french": company("Drones de France", "FR", [RADAR, AUDIO]),
        "stranger": company("Unrelated Bakery", "BE", ["Sourdough bread"]),
    }.items():
        response = await w.registry.post("/companies", json=body)
        assert response.status_code == 201, response.text
        w.tokens[who], w.companies[who] = response.json()["api_token"], response.json()["id"]
    for who, name in (("institute", INSTITUTE), ("other_institute", f"Other {INSTITUTE}")):
        response = await w.registry.post("/accounts", json={"role": "institute", "name": name}, headers=admin_headers())
        assert response.status_code == 201, response.text
        w.tokens[who] = response.json()["api_token"]
    w.project_id = str(uuid.uuid4())
    project = ProjectData(
        id=w.project_id,
        title="Counter-drone sensing",
        summary="Detect and classify small drones.",
        programme="FSDB",
        institute=INSTITUTE,
        domains=["aviation-counter-uas"],
        sought_capabilities=[RADAR, AUDIO],
        partners_wanted=3,
        status="open",
    )
    ranked = [w.companies[c] for c in ("french", "radar", "audio")]
    suggestions = SuggestionsComputed(
        target_type="project",
        target_id=w.project_id,
        target_title=project.title,
        programme="FSDB",
        algorithm_version="test",
        computed_at=datetime.now(UTC),
        suggestions=[
            SuggestionItem(company_id=cid, company_name="?", country="BE", rank=i, score=0.5, reasons=MatchReasons())
            for i, cid in enumerate(ranked, start=1)
        ],
    )
    for topic, data in (("projects.v1", ProjectPosted(project=project)), ("suggestions.v1", suggestions)):
        ce = envelope(data, source="projects" if topic == "projects.v1" else "matching", subject=w.project_id)
        await produce(w.kafka, topic, [(w.project_id.encode(), ce.model_dump_json().encode())])

    async def ready() -> bool:
        async with w.runtime.db.sessions() as s:
            companies = (await s.exec(select(func.count()).select_from(CompanyView))).one()
            targets = (await s.exec(select(func.count()).select_from(TargetView))).one()
            rankings = (await s.exec(select(func.count()).select_from(TargetRanking))).one()
        return companies == 4 and targets == 1 and rankings == 1

    await wait_for(ready, timeout=30, what="profiles, the project and its ranking reached the consortia service")


def rules(draft: dict[str, Any]) -> dict[str, bool]:
    return {r["rule"]: r["ok"] for r in draft["rules"]}


async def consortium_events(w: World, expect: int) -> list[dict[str, Any]]:
    records = await read_topic(w.kafka, "consortia.v1", expect=expect, timeout=20)
    return [json.loads(r.value) for r in records]


async def test_invitations_answered_and_the_rules_turn_green_when_an_eligible_partner_joins(world: World) -> None:
    w = world
    opened = await w.call("POST", "/consortia", "institute", {"target_type": "project", "target_id": w.project_id})
    assert opened.status_code == 201, opened.text
    draft = opened.json()
    cid = draft["id"]
    assert draft["lead"] == {"kind": "institute", "id": INSTITUTE, "name": INSTITUTE}
    assert draft["members"][0]["role"] == "coordinator"
    checks = rules(draft)
    assert checks["posting_institute"] and checks["research_lead"]
    assert not checks["min_entities"] and not checks["needs_covered"] and not draft["rules_passed"]
    why = {r["rule"]: r["why"] for r in draft["rules"]}
    assert why["min_entities"] == "1 entities; FSDB requires at least 2"
    # Each uncovered need names the best-ranked organisations that would cover it, in ranking order.
    gaps = {g["need"]: [c["company_id"] for c in g["candidates"]] for g in draft["gaps"]}
    assert gaps[RADAR] == [w.companies["french"], w.companies["radar"]]
    assert gaps[AUDIO] == [w.companies["french"], w.companies["audio"]]
    assert w.companies["stranger"] not in gaps[RADAR] + gaps[AUDIO]

    invitations = {}
    for who in ("french", "radar"):
        response = await w.call(
            "POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies[who], "message": "Join?"}
        )
        assert response.status_code == 201, response.text
        invitations[who] = response.json()["id"]
    again = await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies["radar"]})
    assert again.status_code == 409

    inbox = await w.call("GET", f"/companies/{w.companies['french']}/invitations", "french")
    assert [(i["id"], i["status"], i["lead"]["name"], i["message"]) for i in inbox.json()] == [
        (invitations["french"], "pending", INSTITUTE, "Join?")
    ]

    declined = await w.call(
        "POST", f"/invitations/{invitations['french']}/decline", "french", {"reason": "no_capacity"}
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    accepted = await w.call("POST", f"/invitations/{invitations['radar']}/accept", "radar")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert (await w.call("POST", f"/invitations/{invitations['radar']}/accept", "radar")).status_code == 200
    assert (await w.call("POST", f"/invitations/{invitations['french']}/accept", "french")).status_code == 409

    draft = (await w.call("GET", f"/consortia/{cid}", "radar")).json()
    assert [m["company_id"] for m in draft["members"]][1:] == [w.companies["radar"]]
    assert rules(draft)["min_entities"] and not rules(draft)["needs_covered"]
    assert {r["why"] for r in draft["rules"] if r["rule"] == "needs_covered"} == {f"uncovered: {AUDIO}"}
    coverage = {n["need"]: [c["company_id"] for c in n["covered_by"]] for n in draft["coverage"]}
    assert coverage == {RADAR: [w.companies["radar"]], AUDIO: []}
    # The declined company is not proposed again; the next ranked one is.
    assert [[c["company_id"] for c in g["candidates"]] for g in draft["gaps"]] == [[w.companies["audio"]]]

    invited = await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies["audio"]})
    assert (await w.call("POST", f"/invitations/{invited.json()['id']}/accept", "audio")).status_code == 200
    draft = (await w.call("GET", f"/consortia/{cid}", "institute")).json()
    assert draft["rules_passed"], draft["rules"]
    assert draft["gaps"] == []

    events = await consortium_events(w, expect=7)
    assert [(e["type"].split(".")[2], e["subject"]) for e in events] == [
        (kind, cid) for kind in ("opened", "invited", "invited", "declined", "accepted", "invited", "accepted")
    ]
    assert [e["data"]["rules_passed"] for e in events if e["type"].endswith("accepted.v1")] == [False, True]
    assert events[3]["data"]["reason"] == "no_capacity"


async def test_only_lead_and_members_see_a_draft_and_a_declined_invitee_sees_nothing_further(world: World) -> None:
    w = world
    cid = (
        await w.call("POST", "/consortia", "institute", {"target_type": "project", "target_id": w.project_id})
    ).json()["id"]
    ids = {}
    for who in ("radar", "french"):
        response = await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies[who]})
        ids[who] = response.json()["id"]
    assert (await w.call("GET", f"/consortia/{cid}", "radar")).status_code == 403  # pending: not a member yet
    await w.call("POST", f"/invitations/{ids['radar']}/accept", "radar")
    await w.call("POST", f"/invitations/{ids['french']}/decline", "french")

    expected = {"institute": 200, "radar": 200, "french": 403, "audio": 403, "other_institute": 403, "anonymous": 401}
    seen = {who: (await w.call("GET", f"/consortia/{cid}", who)).status_code for who in expected}
    assert seen == expected
    assert (await w.call("GET", f"/consortia/{cid}", "french")).json() == {"detail": "not allowed for this account"}
    # Their own invitation stays readable; nobody else's is.
    assert (await w.call("GET", f"/invitations/{ids['french']}", "french")).status_code == 200
    assert (await w.call("GET", f"/invitations/{ids['french']}", "radar")).status_code == 403
    assert (
        await w.call("POST", f"/consortia/{cid}/invitations", "radar", {"company_id": w.companies["audio"]})
    ).status_code == 403
    assert (await w.call("DELETE", f"/invitations/{ids['french']}", "other_institute")).status_code == 403
    assert (await w.call("GET", "/consortia/nope", "institute")).status_code == 404

    mine = {
        who: [c["id"] for c in (await w.call("GET", "/consortia", who)).json()]
        for who in ("institute", "radar", "french")
    }
    assert cid in mine["institute"] and cid in mine["radar"] and cid not in mine["french"]


async def test_withdraw_leave_and_outcome_freeze_the_roster(world: World) -> None:
    w = world
    cid = (await w.call("POST", "/consortia", "radar", {"target_type": "project", "target_id": w.project_id})).json()[
        "id"
    ]
    pending = (
        await w.call("POST", f"/consortia/{cid}/invitations", "radar", {"company_id": w.companies["french"]})
    ).json()
    assert (await w.call("DELETE", f"/invitations/{pending['id']}", "radar")).json()["status"] == "withdrawn"
    assert (await w.call("POST", f"/invitations/{pending['id']}/accept", "french")).status_code == 409
    # A withdrawn invitation frees the place: the company can be invited again.
    fresh = (
        await w.call("POST", f"/consortia/{cid}/invitations", "radar", {"company_id": w.companies["audio"]})
    ).json()
    await w.call("POST", f"/invitations/{fresh['id']}/accept", "audio")
    assert (await w.call("DELETE", f"/consortia/{cid}/members/{w.companies['audio']}", "audio")).status_code == 204
    draft = (await w.call("GET", f"/consortia/{cid}", "radar")).json()
    assert [m["company_id"] for m in draft["members"]] == [w.companies["radar"]]
    assert (await w.call("GET", f"/consortia/{cid}", "audio")).status_code == 403

    submitted = await w.call("POST", f"/consortia/{cid}/outcome", "radar", {"status": "submitted"})
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    late = await w.call("POST", f"/consortia/{cid}/invitations", "radar", {"company_id": w.companies["french"]})
    assert late.status_code == 409
    assert (await w.call("POST", f"/consortia/{cid}/outcome", "radar", {"status": "funded"})).json()[
        "status"
    ] == "funded"
    assert (await w.call("POST", f"/consortia/{cid}/outcome", "radar", {"status": "submitted"})).status_code == 409
    kinds = [e["type"].split(".")[2] for e in await consortium_events(w, expect=9)]
    assert (
        kinds == ["opened", "invited", "withdrawn", "invited", "accepted", "left", "submitted", "closed"][: len(kinds)]
    )
    assert len(kinds) == 8


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(world: World) -> None:
    w = world
    cases = [
        ("POST", "/consortia", {"target_type": "tender", "target_id": w.project_id}, 422, "target_type"),
        ("POST", "/consortia", {"target_type": "project", "target_id": ""}, 422, "target_id"),
        ("POST", "/consortia", {"target_type": "project", "target_id": "unknown"}, 404, ""),
    ]
    for method, url, body, code, fieldname in cases:
        response = await w.call(method, url, "institute", body)
        assert response.status_code == code, response.text
        assert fieldname in response.text
    cid = (
        await w.call("POST", "/consortia", "institute", {"target_type": "project", "target_id": w.project_id})
    ).json()["id"]
    long_message = {"company_id": w.companies["radar"], "message": "x" * 1001}
    assert (await w.call("POST", f"/consortia/{cid}/invitations", "institute", long_message)).status_code == 422
    unknown = await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": "nobody"})
    assert unknown.status_code == 404
    invitation = (
        await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies["radar"]})
    ).json()
    bad_reason = await w.call("POST", f"/invitations/{invitation['id']}/decline", "radar", {"reason": "bored"})
    assert bad_reason.status_code == 422 and "reason" in bad_reason.text
    async with w.runtime.db.sessions() as s:
        stored = (await s.exec(select(Invitation))).all()
    assert [(i.company_id, i.status) for i in stored] == [(w.companies["radar"], "pending")]


async def test_a_members_profile_change_reaches_the_rule_check_without_touching_the_draft(world: World) -> None:
    w = world
    cid = (
        await w.call("POST", "/consortia", "institute", {"target_type": "project", "target_id": w.project_id})
    ).json()["id"]
    for who in ("radar", "audio"):
        invitation = await w.call(
            "POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies[who]}
        )
        await w.call("POST", f"/invitations/{invitation.json()['id']}/accept", who)
    assert (await w.call("GET", f"/consortia/{cid}", "institute")).json()["rules_passed"]

    moved = await w.registry.patch(f"/companies/{w.companies['audio']}", json={"country": "US"}, headers=w.as_("audio"))
    assert moved.status_code == 200, moved.text

    async def eligibility() -> dict[str, Any] | None:
        draft = (await w.call("GET", f"/consortia/{cid}", "institute")).json()
        return None if rules(draft)["eligible_countries"] else draft

    draft = await wait_for(eligibility, timeout=30, what="companies.v1 update reached the rule check")
    assert not draft["rules_passed"]
    assert {r["why"] for r in draft["rules"] if r["rule"] == "eligible_countries"} == {"not eligible: Audio Edge"}


async def test_the_funnel_counts_suggested_invited_accepted_submitted_funded(world: World) -> None:
    w = world
    cid = (
        await w.call("POST", "/consortia", "institute", {"target_type": "project", "target_id": w.project_id})
    ).json()["id"]
    ids = {}
    for who in ("radar", "french"):
        ids[who] = (
            await w.call("POST", f"/consortia/{cid}/invitations", "institute", {"company_id": w.companies[who]})
        ).json()["id"]
    await w.call("POST", f"/invitations/{ids['radar']}/accept", "radar")
    await w.call("POST", f"/invitations/{ids['french']}/decline", "french")
    funnel = (await w.call("GET", f"/projects/{w.project_id}/funnel", "institute")).json()
    assert funnel == {"suggested": 3, "invited": 2, "accepted": 1, "submitted": 0, "funded": 0}
    for outcome in ("submitted", "funded"):
        assert (await w.call("POST", f"/consortia/{cid}/outcome", "institute", {"status": outcome})).status_code == 200
    funnel = (await w.call("GET", f"/projects/{w.project_id}/funnel", "institute")).json()
    assert funnel == {"suggested": 3, "invited": 2, "accepted": 1, "submitted": 1, "funded": 1}
    mine = {
        who: (await w.call("GET", f"/companies/{w.companies[who]}/funnel", who)).json()
        for who in ("radar", "french", "stranger")
    }
    assert mine == {
        "radar": {"suggested": 1, "invited": 1, "accepted": 1, "submitted": 1, "funded": 1},
        "french": {"suggested": 1, "invited": 1, "accepted": 0, "submitted": 0, "funded": 0},
        "stranger": {"suggested": 0, "invited": 0, "accepted": 0, "submitted": 0, "funded": 0},
    }
    assert (await w.call("GET", f"/projects/{w.project_id}/funnel", "other_institute")).status_code == 403
    assert (await w.call("GET", f"/companies/{w.companies['radar']}/funnel", "french")).status_code == 403
