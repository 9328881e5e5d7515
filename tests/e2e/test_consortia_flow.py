"""From suggestion to consortium, end to end: six services as processes on the real Kafka broker and PostgreSQL.

An institute posts an FSDB project, matching suggests partners, the institute opens a draft and
invites two suggested companies; one declines, the other accepts, and the rule check on the real
roster turns green when that eligible partner joins. Every step is also an event on consortia.v1.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.e2e.platform import Platform
from tests.e2e.test_core_flow import (
    TOKENS,
    company,
    eventually,
    institute_token,
    kafka_settings,
    post_project,
    register,
    suggestions_for,
)
from tests.infra import KafkaBroker
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

RADAR = "Radar detection of small drones"


def call(platform: Platform, token: str, method: str, url: str, body: Any = None) -> Any:
    with platform.client("consortia", token) as c:
        response = c.request(method, url, json=body)
    assert response.status_code in (200, 201), f"{method} {url}: {response.status_code} {response.text}"
    return response.json()


def rules(draft: dict[str, Any]) -> dict[str, bool]:
    return {r["rule"]: r["ok"] for r in draft["rules"]}


def test_an_institute_builds_a_consortium_from_suggestions_and_the_rules_turn_green(
    platform: Platform, kafka_broker: KafkaBroker
) -> None:
    tag = uuid.uuid4().hex[:6]
    radar = register(platform, company(f"Radar Ridge {tag}", domains=["aviation-counter-uas"], capabilities=[RADAR]))
    busy = register(
        platform,
        company(f"Busy Beams {tag}", domains=["aviation-counter-uas"], capabilities=[f"{RADAR} with phased arrays"]),
    )
    project = post_project(
        platform,
        title=f"Small-drone radar {tag}",
        domains=["aviation-counter-uas"],
        sought_capabilities=[RADAR],
    )
    suggested = eventually(
        lambda: {s["company_id"] for s in suggestions_for(platform, project)} >= {radar, busy},
        timeout=60,
        what="both companies suggested for the project",
    )
    assert suggested
    lead = institute_token(platform)

    def open_draft() -> dict[str, Any]:
        with platform.client("consortia", lead) as c:
            response = c.post("/consortia", json={"target_type": "project", "target_id": project})
        assert response.status_code == 201, response.text  # 404 until projects.v1 reached the service
        return dict(response.json())

    draft = eventually(open_draft, timeout=30, what="the consortia service knows the project")
    cid = draft["id"]
    assert not draft["rules_passed"] and not rules(draft)["min_entities"] and not rules(draft)["needs_covered"]
    candidates = {c["company_id"] for g in draft["gaps"] for c in g["candidates"]}
    assert {radar, busy} <= candidates, draft["gaps"]

    invitations = {
        who: call(platform, lead, "POST", f"/consortia/{cid}/invitations", {"company_id": who, "message": "Join?"})
        for who in (busy, radar)
    }
    inbox = call(platform, TOKENS[busy], "GET", f"/companies/{busy}/invitations")
    assert [i["id"] for i in inbox] == [invitations[busy]["id"]] and inbox[0]["target_id"] == project

    call(platform, TOKENS[busy], "POST", f"/invitations/{invitations[busy]['id']}/decline", {"reason": "no_capacity"})
    assert not call(platform, lead, "GET", f"/consortia/{cid}")["rules_passed"]
    call(platform, TOKENS[radar], "POST", f"/invitations/{invitations[radar]['id']}/accept")

    draft = call(platform, TOKENS[radar], "GET", f"/consortia/{cid}")  # a member sees the draft too
    assert draft["rules_passed"], draft["rules"]
    assert [m["company_id"] for m in draft["members"]][1:] == [radar]
    assert draft["coverage"] == [
        {
            "need": RADAR,
            "kind": "capability",
            "covered_by": [{"company_id": radar, "name": f"Radar Ridge {tag}", "evidence": RADAR}],
        }
    ]
    with platform.client("consortia", TOKENS[busy]) as c:
        assert c.get(f"/consortia/{cid}").status_code == 403  # a declined invitee sees nothing further

    settings = kafka_settings(platform, kafka_broker)
    records = asyncio.run(read_topic(settings, "consortia.v1", expect=5, timeout=30))
    mine = [json.loads(r.value) for r in records if r.key == cid.encode()]
    assert [e["type"] for e in mine] == [
        f"bondgenoot.consortium.{kind}.v1" for kind in ("opened", "invited", "invited", "declined", "accepted")
    ]
    assert mine[-1]["data"]["rules_passed"] is True
