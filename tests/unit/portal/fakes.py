"""An in-memory stand-in for the five services' HTTP APIs (unit tests only; the browser journeys use the real ones)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ADMIN_TOKEN = "bgt_admin_fake"
INSTITUTE_TOKEN = "bgt_institute_fake"
COMPANY_ID = "11111111-2222-3333-4444-555555555555"
COMPANY_TOKEN = "bgt_company_fake"
NOW = "2026-12-01T10:00:00Z"

ACCOUNTS = {
    ADMIN_TOKEN: {
        "id": "admin",
        "role": "admin",
        "name": "platform administrator",
        "company_id": None,
        "institute": None,
    },
    INSTITUTE_TOKEN: {
        "id": "acc-inst",
        "role": "institute",
        "name": "Flemish Institute",
        "company_id": None,
        "institute": "Flemish Institute",
    },
    COMPANY_TOKEN: {"id": "acc-comp", "role": "company", "name": "Acme", "company_id": COMPANY_ID, "institute": None},
}


def company(name: str = "Acme", **over: Any) -> dict[str, Any]:
    return {
        "id": COMPANY_ID,
        "name": name,
        "country": "BE",
        "city": "Leuven",
        "enterprise_number": None,
        "organisation_type": "company",
        "size": "small",
        "domains": ["cybersecurity"],
        "capabilities": ["Radar detection of small drones"],
        "keywords": ["radar"],
        "website": None,
        "contact_email": "info@acme.example",
        "parent_group": None,
        "pic": None,
        "history": [],
        "created_at": NOW,
        "updated_at": NOW,
        **over,
    }


REASONS = {
    "matched_domains": ["cybersecurity"],
    "capability_matches": [
        {"sought": "Drone detection", "capability": "Radar detection of small drones", "similarity": 0.8}
    ],
    "top_terms": ["radar", "drone"],
    "signals": {},
    "eligibility": "BE is eligible",
    "summary": "Strong radar fit",
}


@dataclass
class FakeServices:
    """Routes requests like the real services would, recording every request it saw."""

    companies: dict[str, dict[str, Any]] = field(default_factory=lambda: {COMPANY_ID: company()})
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    subscription: dict[str, Any] | None = None
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def who(self, request: httpx.Request) -> dict[str, Any] | None:
        header = request.headers.get("authorization", "")
        return ACCOUNTS.get(header.removeprefix("Bearer ")) if header else None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path, method = request.url.path, request.method
        who = self.who(request)
        if request.headers.get("authorization") and who is None:
            return httpx.Response(401, json={"detail": "invalid or revoked token"})
        body = json.loads(request.content) if request.content else None
        if path == "/healthz":
            return httpx.Response(
                200,
                json={
                    "service": request.url.host,
                    "database": "ok",
                    "kafka": "ok",
                    "outbox_pending": 0,
                    "outbox_oldest_unpublished_age_s": None,
                },
            )
        if path == "/ops/dead-letters":
            return httpx.Response(200, json={"total": 0, "topics": {}})
        if path == "/accounts/me":
            return httpx.Response(200, json=who) if who else httpx.Response(401, json={"detail": "needs a token"})
        if path == "/accounts" and method == "GET":
            return httpx.Response(
                200,
                json={
                    "items": [{**a, "created_at": NOW} for a in ACCOUNTS.values()],
                    "total": 3,
                    "limit": 200,
                    "offset": 0,
                },
            )
        if path == "/companies" and method == "POST":
            if not body.get("capabilities"):
                return httpx.Response(
                    422,
                    json={
                        "detail": [
                            {
                                "loc": ["body", "capabilities"],
                                "msg": "List should have at least 1 item after validation, not 0",
                                "type": "too_short",
                                "ctx": {"min_length": 1},
                            }
                        ]
                    },
                )
            new = company(**{k: v for k, v in body.items()})
            new["id"] = str(uuid.uuid4())
            self.companies[new["id"]] = new
            ACCOUNTS["bgt_newly_issued_token"] = {
                "id": "acc-new",
                "role": "company",
                "name": new["name"],
                "company_id": new["id"],
                "institute": None,
            }
            return httpx.Response(201, json={**new, "account_id": "acc-new", "api_token": "bgt_newly_issued_token"})
        if path == "/companies":
            items = list(self.companies.values())
            return httpx.Response(200, json={"items": items, "total": len(items), "limit": 25, "offset": 0})
        if m := re.fullmatch(r"/companies/([^/]+)", path):
            found = self.companies.get(m[1])
            if found is None:
                return httpx.Response(404, json={"detail": "company not found"})
            if method == "PATCH":
                found.update(body)
            return httpx.Response(200, json=found)
        if path == "/calls":
            return httpx.Response(200, json={"items": [self.call()], "total": 1, "limit": 25, "offset": 0})
        if m := re.fullmatch(r"/calls/([^/]+)/suggestions", path):
            return httpx.Response(
                200,
                json={
                    "call_id": m[1],
                    "algorithm_version": "v",
                    "computed_at": NOW,
                    "suggestions": [self.suggestion()],
                },
            )
        if m := re.fullmatch(r"/calls/([^/]+)", path):
            return httpx.Response(200, json=self.call(m[1]))
        if path == "/projects" and method == "POST":
            if int(body.get("partners_wanted", 5)) > 50:
                return httpx.Response(
                    422,
                    json={
                        "detail": [
                            {
                                "loc": ["body", "partners_wanted"],
                                "msg": "Input should be less than or equal to 50",
                                "type": "less_than_equal",
                                "ctx": {"le": 50},
                            }
                        ]
                    },
                )
            project = {
                **body,
                "id": str(uuid.uuid4()),
                "status": "open",
                "created_at": NOW,
                "updated_at": NOW,
                "closed_at": None,
                "deadline": body.get("deadline"),
            }
            self.projects[project["id"]] = project
            return httpx.Response(201, json=project)
        if path == "/projects":
            items = list(self.projects.values())
            return httpx.Response(200, json={"items": items, "total": len(items), "limit": 100, "offset": 0})
        if m := re.fullmatch(r"/projects/([^/]+)/(suggestions|consortia)", path):
            if who is None or who["role"] == "company":
                return httpx.Response(403 if who else 401, json={"detail": "not allowed"})
            if m[2] == "suggestions":
                return httpx.Response(
                    200, json={"project_id": m[1], "computed_at": NOW, "suggestions": [self.suggestion()]}
                )
            return httpx.Response(200, json={"project_id": m[1], "computed_at": NOW, "proposals": [self.proposal()]})
        if m := re.fullmatch(r"/projects/([^/]+)(/close)?", path):
            project = self.projects.get(m[1])
            if project is None:
                return httpx.Response(404, json={"detail": "project not found"})
            if method == "PATCH":
                project.update(body)
            if m[2]:
                project["status"] = "closed"
            return httpx.Response(200, json=project)
        if m := re.fullmatch(r"/subscriptions/([^/]+)", path):
            if method == "PUT":
                self.subscription = {**body, "company_id": m[1], "created_at": NOW, "updated_at": NOW, "channels": {}}
            if self.subscription is None:
                return httpx.Response(404, json={"detail": "subscription not found"})
            return httpx.Response(200, json=self.subscription)
        if m := re.fullmatch(r"/subscriptions/([^/]+)/channels/webhook/test", path):
            return httpx.Response(200, json={"ok": True, "status_code": 204, "latency_ms": 12.0, "error": None})
        if m := re.fullmatch(r"/subscriptions/([^/]+)/channels/(email|webhook)", path):
            if method == "PUT":
                row = {**body, "active": True, "created_at": NOW, "updated_at": NOW}
                if m[2] == "webhook":
                    row["secret"] = "whsec_shown_once"
                else:  # a new address waits for its owner's confirmation (services/alerts/confirmation.py)
                    row |= {"confirmed": False, "confirmation_sent_at": None, "confirmation_error": None}
                assert self.subscription is not None
                self.subscription["channels"][m[2]] = row
                return httpx.Response(200, json=row)
            return httpx.Response(204)
        if m := re.fullmatch(r"/companies/([^/]+)/alerts", path):
            return httpx.Response(200, json={"items": self.alerts, "total": len(self.alerts), "limit": 50, "offset": 0})
        if m := re.fullmatch(r"/companies/([^/]+)/alerts/([^/]+)", path):
            found = next((a for a in self.alerts if a["id"] == m[2]), None)
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={"detail": "alert not found"})
        if request.url.host == "127.0.0.1" and request.url.port == 8006:
            return self.consortia(method, path, who, body)
        if re.fullmatch(r"/consortia/(project|call)/([^/]+)", path):  # matching's proposals
            return httpx.Response(200, json={"computed_at": NOW, "proposals": [self.proposal()]})
        if path == "/asyncapi.json":
            return httpx.Response(
                200,
                json={
                    "asyncapi": "3.0.0",
                    "info": {"title": "Bondgenoot", "version": "1"},
                    "channels": {
                        "projects_v1": {
                            "address": "projects.v1",
                            "x-public": True,
                            "messages": {"m": {"$ref": "#/components/messages/bondgenoot.project.posted.v1"}},
                        }
                    },
                    "components": {"messages": {"bondgenoot.project.posted.v1": {"title": "posted"}}},
                },
            )
        return httpx.Response(404, json={"detail": f"fake has no {method} {path}"})

    def consortia(self, method: str, path: str, who: dict[str, Any] | None, body: Any) -> httpx.Response:
        """The consortia service: drafts led by the institute, one invitation each for the company."""
        if who is None:
            return httpx.Response(401, json={"detail": "this needs an API token"})
        if path == "/consortia" and method == "POST":
            draft = self.draft(body["target_type"], body["target_id"], lead=who)
            return httpx.Response(201, json=draft)
        if path == "/consortia":
            return httpx.Response(200, json=[{**d, "role": "lead"} for d in self.drafts.values()])
        if m := re.fullmatch(r"/consortia/([^/]+)", path):
            found = self.drafts.get(m[1])
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={"detail": "not found"})
        if m := re.fullmatch(r"/consortia/([^/]+)/invitations", path):
            draft = self.drafts[m[1]]
            if any(i["company_id"] == body["company_id"] for i in draft["invitations"]):
                return httpx.Response(409, json={"detail": "Acme is already invited or a member"})
            invitation = {
                "id": str(uuid.uuid4()),
                "consortium_id": m[1],
                "company_id": body["company_id"],
                "company_name": "Acme",
                "status": "pending",
                "reason": None,
                "message": body.get("message", ""),
                "created_at": NOW,
                "answered_at": None,
            }
            draft["invitations"].append(invitation)
            return httpx.Response(201, json=invitation)
        if m := re.fullmatch(r"/companies/([^/]+)/invitations", path):
            return httpx.Response(200, json=[self.for_invitee(i) for i in self.invitations()])
        if m := re.fullmatch(r"/invitations/([^/]+)/(accept|decline)", path):
            invitation = next(i for i in self.invitations() if i["id"] == m[1])
            invitation["status"] = "accepted" if m[2] == "accept" else "declined"
            invitation["reason"] = (body or {}).get("reason")
            return httpx.Response(200, json=self.for_invitee(invitation))
        if m := re.fullmatch(r"/invitations/([^/]+)", path):
            invitation = next(i for i in self.invitations() if i["id"] == m[1])
            invitation["status"] = "withdrawn"
            return httpx.Response(200, json=invitation)
        if re.fullmatch(r"/(projects|companies)/([^/]+)/funnel", path):
            return httpx.Response(200, json={"suggested": 7, "invited": 3, "accepted": 2, "submitted": 1, "funded": 1})
        if m := re.fullmatch(r"/consortia/([^/]+)/outcome", path):
            self.drafts[m[1]]["status"] = body["status"]
            return httpx.Response(200, json=self.drafts[m[1]])
        return httpx.Response(404, json={"detail": f"fake has no {method} {path}"})

    def invitations(self) -> list[dict[str, Any]]:
        return [i for d in self.drafts.values() for i in d["invitations"]]

    def for_invitee(self, invitation: dict[str, Any]) -> dict[str, Any]:
        draft = self.drafts[invitation["consortium_id"]]
        keep = ("target_type", "target_id", "target_title", "programme", "lead")
        return {**invitation, **{k: draft[k] for k in keep}}

    def draft(self, target_type: str, target_id: str, *, lead: dict[str, Any]) -> dict[str, Any]:
        name = lead["institute"] or lead["name"]
        draft = {
            "id": str(uuid.uuid4()),
            "target_type": target_type,
            "target_id": target_id,
            "target_title": "Counter-drone sensing",
            "programme": "FSDB",
            "status": "draft",
            "lead": {"kind": "institute", "id": name, "name": name},
            "members": [{"company_id": name, "name": name, "country": "BE", "role": "coordinator", "covers": []}],
            "invitations": [],
            "rules": [
                {"rule": "min_entities", "ok": False, "why": "1 entities; FSDB requires at least 2"},
                {"rule": "posting_institute", "ok": True, "why": "posting institute is a member"},
            ],
            "rules_passed": False,
            "coverage": [{"need": "Drone detection", "kind": "capability", "covered_by": []}],
            "gaps": [
                {
                    "need": "Drone detection",
                    "why_empty": "",
                    "candidates": [
                        {
                            "company_id": COMPANY_ID,
                            "name": "Acme",
                            "country": "BE",
                            "rank": 1,
                            "evidence": "Radar detection of small drones",
                        }
                    ],
                }
            ],
            "created_at": NOW,
            "updated_at": NOW,
        }
        self.drafts[draft["id"]] = draft
        return draft

    @staticmethod
    def call(call_id: str = "EDF-2026-DA-TEST") -> dict[str, Any]:
        return {
            "id": call_id,
            "programme": "EDF",
            "title": "Counter-drone sensing",
            "call_identifier": "EDF-2026",
            "call_title": None,
            "status": "open",
            "opening_date": None,
            "deadlines": ["2027-04-08"],
            "budget_eur": 1000000,
            "action_type": "RIA",
            "edf_category": "AIRDEF",
            "description": "<p>Detect drones</p>",
            "url": "https://example.org/topic",
            "keywords": [],
            "domains": ["aviation-counter-uas"],
            "first_seen_at": NOW,
            "updated_at": NOW,
            "closed_at": None,
        }

    @staticmethod
    def suggestion(name: str = "Acme") -> dict[str, Any]:
        return {
            "company_id": COMPANY_ID,
            "company_name": name,
            "country": "BE",
            "rank": 1,
            "score": 0.82,
            "reasons": REASONS,
        }

    @staticmethod
    def proposal() -> dict[str, Any]:
        return {
            "rank": 1,
            "score": 0.7,
            "members": [
                {
                    "company_id": COMPANY_ID,
                    "company_name": "Acme",
                    "country": "BE",
                    "role": "partner",
                    "covers": ["Drone detection"],
                }
            ],
            "coverage": [
                {
                    "need": "Drone detection",
                    "company_id": COMPANY_ID,
                    "evidence": "Radar detection of small drones",
                    "similarity": 0.8,
                }
            ],
            "rules": [{"rule": "FSDB: at least 2 entities", "passed": False, "detail": "1 entity"}],
        }

    def alert(self, **over: Any) -> dict[str, Any]:
        row = {
            "id": str(uuid.uuid4()),
            "company_id": COMPANY_ID,
            "target_type": "call",
            "target_id": "EDF-2026-DA-TEST",
            "target_title": "Counter-drone sensing",
            "programme": "EDF",
            "score": 0.8,
            "rank": 1,
            "reasons": REASONS,
            "created_at": NOW,
            **over,
        }
        self.alerts.insert(0, row)
        return row
