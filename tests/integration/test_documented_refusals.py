"""Every 4xx an operation documents is really answered (#9 §6: "every documented 4xx reachable").

The other direction — no route answers a status it does not document — is schemathesis'
``status_code_conformance`` in tests/integration/test_api_fuzz.py. Here, for each status each
operation documents (shared/api_docs.py writes most of them), a probe sends the request that must
get it: generic probes for what the shared machinery refuses (a bad token, a role that may not, a
NUL, a body too large, not JSON, not UTF-8, too many failed logins), and a few scenarios for the
refusals of a handler's own (a conflict, an entity that is not there).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from services.alerts.delivery_models import AlertLogEntry, Delivery
from services.consortia.models import CompanyView, TargetView
from shared.api_docs import RESTRICTED, access_of, rows_of
from shared.auth import INTERNAL_TOKEN_HEADER, OWNER_LOOKUP, Access, FailureLimiter, allowed
from shared.events.companies import CompanyProfileData
from shared.limits import DEFAULT_MAX_BODY_BYTES
from tests.infra import Databases
from tests.integration.apis import SERVICES, Apis, five_services

pytestmark = pytest.mark.infra

MISSING_UUID = "00000000-0000-4000-8000-000000000000"
BAD_TOKEN = {"Authorization": "Bearer bgt_this-token-does-not-exist"}
KBO = "0417.497.106"
SEQUENCE = itertools.count(1)


@dataclass
class Probe:
    """The services, callers of each role and a few rows the scenarios need."""

    apis: Apis
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    async def call(
        self, service: str, method: str, url: str, *, caller: str = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if caller != "admin":
            headers.setdefault("Authorization", f"Bearer {self.tokens[caller]}")
        return await self.apis.clients[service].request(method, url, headers=headers, **kwargs)


def company(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "country": "BE",
        "city": "Gent",
        "size": "small",
        "domains": ["cybersecurity"],
        "capabilities": ["intrusion detection"],
        "contact_email": f"{uuid.uuid4().hex[:8]}@probe.example",
        **extra,
    }


@pytest.fixture(scope="module")
async def probe(pg_admin_url: str) -> AsyncIterator[Probe]:
    databases = Databases(pg_admin_url)
    try:
        async with five_services(databases) as apis:
            p = Probe(apis)
            registered = await p.call("registry", "POST", "/companies", json=company("Probe Company NV"))
            assert registered.status_code == 201, registered.text
            p.tokens["company"], p.ids["company"] = registered.json()["api_token"], registered.json()["id"]
            body = {"role": "institute", "name": "Probe Institute"}
            institute = await p.call("registry", "POST", "/accounts", json=body)
            assert institute.status_code == 201, institute.text
            p.tokens["institute"] = institute.json()["api_token"]
            integrator = await p.call("registry", "POST", "/accounts", json={"role": "integrator", "name": "Probe CRM"})
            assert integrator.status_code == 201, integrator.text
            p.tokens["integrator"] = integrator.json()["api_token"]
            yield p
    finally:
        databases.drop_all()


# --------------------------------------------------------------------------- filling in a route


def fill(path: str, operation: dict[str, Any], **values: str) -> str:
    """The path with every parameter set to a value its schema accepts but no stored entity has."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name, schema = parameter["name"], parameter.get("schema", {})
        if name in values:
            value = values[name]
        elif schema.get("type") == "integer":
            value = "999999"
        elif "enum" in schema:
            value = str(schema["enum"][0])
        else:
            value = MISSING_UUID
        path = path.replace("{" + name + "}", value)
    return path


# Valid bodies for the routes whose 404 comes after the body is read.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/companies/{company_id}"): {},
    ("PATCH", "/projects/{project_id}"): {},
    ("PUT", "/subscriptions/{company_id}/channels/email"): {"address": "probe@probe.example"},
    ("PUT", "/subscriptions/{company_id}/channels/webhook"): {"url": "https://hooks.example/probe"},
    ("POST", "/accounts"): {"role": "company", "company_id": MISSING_UUID},
    ("POST", "/consortia"): {"target_type": "project", "target_id": MISSING_UUID},
    ("POST", "/consortia/{consortium_id}/invitations"): {"company_id": MISSING_UUID},
    ("POST", "/consortia/{consortium_id}/outcome"): {"status": "submitted"},
    ("POST", "/ops/parked-events/{parked_id}/discard"): {"reason": "probe"},
}


def forbidden_call(service: str, method: str, path: str) -> tuple[str, str]:
    """A restricted row of the route's access table and a role it refuses (so the answer is 403)."""
    for row in rows_of(service, method, path):
        if row.access not in RESTRICTED:
            continue
        for caller in ("company", "institute", "integrator"):
            # A caller whose ownership is looked up gets 404 for a resource that is not there.
            if not allowed(row.access, caller, own=False) and caller not in OWNER_LOOKUP.get(row.access, ()):
                return row.path, caller
    raise AssertionError(f"{method} {path} documents 403 but no role is refused")


# --------------------------------------------------------------------------- scenarios


Scenario = Callable[[Probe], Awaitable[httpx.Response]]
SCENARIOS: dict[tuple[str, str, str, int], Scenario] = {}


def scenario(service: str, method: str, path: str, status: int) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[(service, method, path, status)] = fn
        return fn

    return register


@scenario("registry", "POST", "/companies", 409)
async def _same_enterprise_number(p: Probe) -> httpx.Response:
    first = await p.call("registry", "POST", "/companies", json=company("First NV", enterprise_number=KBO))
    assert first.status_code == 201, first.text
    p.ids["kbo_company"] = first.json()["id"]
    return await p.call("registry", "POST", "/companies", json=company("Second NV", enterprise_number=KBO))


@scenario("registry", "PATCH", "/companies/{company_id}", 409)
async def _patch_to_a_taken_enterprise_number(p: Probe) -> httpx.Response:
    other = await p.call("registry", "POST", "/companies", json=company("Taken NV", enterprise_number="0403.199.702"))
    assert other.status_code == 201, other.text
    url = f"/companies/{p.ids['company']}"
    return await p.call("registry", "PATCH", url, json={"enterprise_number": "0403.199.702"})


@scenario("registry", "POST", "/accounts", 409)
async def _same_institute_twice(p: Probe) -> httpx.Response:
    return await p.call("registry", "POST", "/accounts", json={"role": "institute", "name": "Probe Institute"})


@scenario("registry", "POST", "/accounts/{account_id}/tokens/rotate", 409)
async def _rotate_the_admin_token(p: Probe) -> httpx.Response:
    return await p.call("registry", "POST", "/accounts/admin/tokens/rotate")


@scenario("registry", "DELETE", "/accounts/{account_id}/tokens", 409)
async def _revoke_the_admin_token(p: Probe) -> httpx.Response:
    return await p.call("registry", "DELETE", "/accounts/admin/tokens")


@scenario("projects", "PATCH", "/projects/{project_id}", 409)
async def _patch_a_closed_project(p: Probe) -> httpx.Response:
    body = {
        "title": "Probe project",
        "summary": "Probing.",
        "programme": "FSDB",
        "institute": "Probe Institute",
        "domains": ["cybersecurity"],
        "sought_capabilities": ["intrusion detection"],
        "contact_email": "pi@probe.example",
    }
    posted = await p.call("projects", "POST", "/projects", json=body)
    assert posted.status_code == 201, posted.text
    url = f"/projects/{posted.json()['id']}"
    assert (await p.call("projects", "POST", f"{url}/close")).status_code == 200
    return await p.call("projects", "PATCH", url, json={"partners_wanted": 3})


async def _delivery(p: Probe, status: str) -> str:
    """A delivery of the probe company, as the alert consumer would have left it."""
    delivery = Delivery(alert_id=str(uuid.uuid4()), company_id=p.ids["company"], channel="email", status=status)
    async with p.apis.runtimes["alerts"].db.sessions() as session:
        session.add(
            AlertLogEntry(seq=next(SEQUENCE), alert_id=delivery.alert_id, company_id=delivery.company_id, event="{}")
        )
        session.add(delivery)
        await session.commit()
    return delivery.id


@scenario("alerts", "POST", "/deliveries/{delivery_id}/redeliver", 409)
async def _redeliver_a_queued_delivery(p: Probe) -> httpx.Response:
    return await p.call("alerts", "POST", f"/deliveries/{await _delivery(p, 'pending')}/redeliver")


@scenario("alerts", "POST", "/deliveries/{delivery_id}/redeliver", 403)
async def _redeliver_another_companys_delivery(p: Probe) -> httpx.Response:
    delivery = await _delivery(p, "failed")
    return await p.call("alerts", "POST", f"/deliveries/{delivery}/redeliver", caller="institute")


@scenario("alerts", "GET", "/deliveries/{delivery_id}", 403)
async def _read_another_companys_delivery(p: Probe) -> httpx.Response:
    return await p.call("alerts", "GET", f"/deliveries/{await _delivery(p, 'failed')}", caller="institute")


async def _invalid_unsubscribe_link(p: Probe, method: str) -> httpx.Response:
    return await p.call("alerts", method, "/unsubscribe/not-a-signed-token")


SCENARIOS[("alerts", "GET", "/unsubscribe/{token}", 400)] = lambda p: _invalid_unsubscribe_link(p, "GET")
SCENARIOS[("alerts", "POST", "/unsubscribe/{token}", 400)] = lambda p: _invalid_unsubscribe_link(p, "POST")


async def _consortia_rows(p: Probe) -> None:
    """What the consortia service would have read from projects.v1 and companies.v1: two targets, one company."""
    if "consortia_rows" in p.ids:
        return
    company = (await p.call("registry", "GET", f"/companies/{p.ids['company']}")).json()
    profile = CompanyProfileData.model_validate({**company, "updated_at": None}).model_dump(mode="json")
    async with p.apis.runtimes["consortia"].db.sessions() as session:
        for target_id, status in (("p-open", "open"), ("p-closed", "closed")):
            session.add(
                TargetView(
                    target_type="project", target_id=target_id, title="Probe", programme="FSDB", status=status, facts={}
                )
            )
        session.add(CompanyView(company_id=p.ids["company"], name=profile["name"], profile=profile))
        await session.commit()
    p.ids["consortia_rows"] = "yes"


async def _consortium(p: Probe, *, funded: bool = False) -> str:
    await _consortia_rows(p)
    opened = await p.call("consortia", "POST", "/consortia", json={"target_type": "project", "target_id": "p-open"})
    assert opened.status_code == 201, opened.text
    consortium_id: str = opened.json()["id"]
    if funded:
        outcome = await p.call("consortia", "POST", f"/consortia/{consortium_id}/outcome", json={"status": "funded"})
        assert outcome.status_code == 200, outcome.text
    return consortium_id


async def _invitation(p: Probe, answer: str) -> str:
    """An invitation of the probe company that is no longer pending (``withdraw`` or ``decline``)."""
    consortium_id = await _consortium(p)
    invited = await p.call(
        "consortia", "POST", f"/consortia/{consortium_id}/invitations", json={"company_id": p.ids["company"]}
    )
    assert invited.status_code == 201, invited.text
    invitation_id: str = invited.json()["id"]
    method, url = ("DELETE", "") if answer == "withdraw" else ("POST", "/decline")
    answered = await p.call("consortia", method, f"/invitations/{invitation_id}{url}")
    assert answered.status_code == 200, answered.text
    return invitation_id


@scenario("consortia", "POST", "/consortia", 409)
async def _open_a_consortium_for_a_closed_target(p: Probe) -> httpx.Response:
    await _consortia_rows(p)
    return await p.call("consortia", "POST", "/consortia", json={"target_type": "project", "target_id": "p-closed"})


@scenario("consortia", "POST", "/consortia/{consortium_id}/outcome", 409)
async def _submit_a_funded_consortium(p: Probe) -> httpx.Response:
    consortium_id = await _consortium(p, funded=True)
    return await p.call("consortia", "POST", f"/consortia/{consortium_id}/outcome", json={"status": "submitted"})


@scenario("consortia", "POST", "/consortia/{consortium_id}/invitations", 409)
async def _invite_into_a_funded_consortium(p: Probe) -> httpx.Response:
    consortium_id = await _consortium(p, funded=True)
    body = {"company_id": p.ids["company"]}
    return await p.call("consortia", "POST", f"/consortia/{consortium_id}/invitations", json=body)


@scenario("consortia", "DELETE", "/consortia/{consortium_id}/members/{company_id}", 409)
async def _remove_a_member_of_a_funded_consortium(p: Probe) -> httpx.Response:
    consortium_id = await _consortium(p, funded=True)
    return await p.call("consortia", "DELETE", f"/consortia/{consortium_id}/members/{p.ids['company']}")


@scenario("consortia", "POST", "/invitations/{invitation_id}/accept", 409)
async def _accept_a_withdrawn_invitation(p: Probe) -> httpx.Response:
    return await p.call("consortia", "POST", f"/invitations/{await _invitation(p, 'withdraw')}/accept")


@scenario("consortia", "POST", "/invitations/{invitation_id}/decline", 409)
async def _decline_a_withdrawn_invitation(p: Probe) -> httpx.Response:
    return await p.call("consortia", "POST", f"/invitations/{await _invitation(p, 'withdraw')}/decline")


@scenario("consortia", "DELETE", "/invitations/{invitation_id}", 409)
async def _withdraw_a_declined_invitation(p: Probe) -> httpx.Response:
    return await p.call("consortia", "DELETE", f"/invitations/{await _invitation(p, 'decline')}")


# --------------------------------------------------------------------------- generic probes


async def send_probe(
    p: Probe, service: str, method: str, path: str, operation: dict[str, Any], status: int
) -> httpx.Response:
    """The request that must get ``status`` from this operation."""
    if (service, method, path, status) in SCENARIOS:
        return await SCENARIOS[(service, method, path, status)](p)
    url = fill(path, operation)
    access = access_of(service, method, path)
    internal = Access.INTERNAL in access
    if status == 400:  # a JSON route, sent bytes that are not UTF-8
        return await p.call(service, method, url, content=b"\xff\xfe\xfa", headers={"content-type": "application/json"})
    if status == 401:
        headers = {INTERNAL_TOKEN_HEADER: "not-the-secret"} if internal else BAD_TOKEN
        return await p.call(
            service, method, url, headers={**headers, "Authorization": headers.get("Authorization", "")}
        )
    if status == 403:
        row_path, caller = forbidden_call(service, method, path)
        return await p.call(service, method, fill(row_path, operation), caller=caller)
    if status == 404:
        return await p.call(service, method, url, json=BODIES.get((method, path)))
    if status == 413:
        body = b"[" + b" " * DEFAULT_MAX_BODY_BYTES + b"]"
        return await p.call(service, method, url, content=body, headers={"content-type": "application/json"})
    if status == 415:
        return await p.call(service, method, url, content=b"{}", headers={"content-type": "text/plain"})
    if status == 422:  # every parameter is checked, declared or not (shared.validation.guard_input)
        return await p.call(service, method, url, params={"probe": "\x00"})
    if status == 429:
        guard = p.apis.apps[service].state.auth
        saved, guard.limiter = guard.limiter, FailureLimiter(1)
        try:
            headers = {INTERNAL_TOKEN_HEADER: "not-the-secret"} if internal else BAD_TOKEN
            await p.call(service, method, url, headers=headers)
            return await p.call(service, method, url, headers=headers)
        finally:
            guard.limiter = saved
    raise AssertionError(f"no probe for {status}")


def documented_refusals(apis: Apis, service: str) -> list[tuple[str, str, dict[str, Any], int]]:
    out = []
    for path, operations in apis.apps[service].openapi()["paths"].items():
        for method, operation in operations.items():
            out += [
                (method.upper(), path, operation, int(code)) for code in operation["responses"] if code.startswith("4")
            ]
    return out


@pytest.mark.parametrize("service", SERVICES)
async def test_every_documented_4xx_is_answered(probe: Probe, service: str) -> None:
    missed = []
    documented = documented_refusals(probe.apis, service)
    for method, path, operation, status in documented:
        response = await send_probe(probe, service, method, path, operation, status)
        if response.status_code != status:
            missed.append(
                f"{method} {path}: documents {status}, the probe got {response.status_code} {response.text[:200]}"
            )
    assert documented, "no documented refusals at all"
    assert missed == [], "\n".join(missed)
