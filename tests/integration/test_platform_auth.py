"""Authentication that cannot be turned against the platform.

The registry and the alerts service run as deployed: each behind its own uvicorn server (configured
by ``shared.http.server_config``, as ``serve()`` does), on real PostgreSQL databases and the real
Kafka broker; the alerts service introspects tokens at the registry over HTTP from 127.0.0.1 — the
same address the test's clients use, as on one host, behind a NAT, or when a webhook is aimed at
the registry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlmodel import col, func, select

from services.alerts.bootstrap import build as build_alerts
from services.alerts.delivery_models import AlertLogEntry, Delivery, DeliveryAttempt, SubscriptionChannel
from services.alerts.models import Alert, Subscription
from services.alerts.removal import RemovedCompany
from services.alerts.settings import AlertsSettings
from services.portal.bootstrap import build as build_portal
from services.portal.settings import PortalSettings
from services.projects.bootstrap import build as build_projects
from services.projects.settings import ProjectsSettings
from services.registry.bootstrap import build as build_registry
from services.registry.settings import RegistrySettings
from shared.auth import AuthGuard, AuthSettings
from shared.events.base import envelope
from shared.events.companies import CompanyRemoved
from shared.http import server_config
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, env, free_port, wait_for
from tests.integration.alerts_harness import Receiver, Sse, next_events, raise_alert
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

FAILURE_LIMIT = 5
TOKEN_TTL_S = 1.0


@dataclass
class Served:
    app: FastAPI
    runtime: ServiceRuntime
    url: str
    client: httpx.AsyncClient

    @property
    def guard(self) -> AuthGuard:
        return self.app.state.auth  # type: ignore[no-any-return]


@dataclass
class Platform:
    registry: Served
    alerts: Served

    async def register_company(self) -> tuple[str, str, str]:
        """Self-registration at the registry: (company id, account id, token)."""
        tag = uuid.uuid4().hex[:8]
        body = {
            "name": f"Edge {tag}",
            "country": "BE",
            "city": "Gent",
            "size": "small",
            "domains": ["cybersecurity"],
            "capabilities": ["Intrusion detection for naval systems"],
            "contact_email": f"{tag}@edge.example",
        }
        response = await self.registry.client.post("/companies", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return data["id"], data["account_id"], data["api_token"]


@asynccontextmanager
async def serve(app: FastAPI, runtime: ServiceRuntime, port: int) -> AsyncIterator[Served]:
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, lifespan="off"))
    url = f"http://127.0.0.1:{port}"
    async with runtime.lifespan():
        serving = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started, timeout=10, what=f"{runtime.name} serving")
            await wait_for(runtime.kafka_ready.is_set, timeout=30, what=f"{runtime.name} connected to Kafka")
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield Served(app, runtime, url, client)
        finally:
            server.should_exit = True
            await serving


@pytest.fixture
def auth_env() -> dict[str, str]:
    """Authentication settings both services start with (parametrize to change)."""
    return {}


@pytest.fixture
async def platform(
    databases: Databases, kafka_settings: KafkaSettings, auth_env: dict[str, str]
) -> AsyncIterator[Platform]:
    registry_port, alerts_port = free_port(), free_port()
    settings = {
        "BONDGENOOT_REGISTRY_URL": f"http://127.0.0.1:{registry_port}",
        "AUTH_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "AUTH_CACHE_TTL": str(TOKEN_TTL_S),
        **auth_env,
    }
    with env(**settings):
        registry = build_registry(
            RegistrySettings(database_url=databases.create("registry"), OUTBOX_POLL_INTERVAL=0.1, kafka=kafka_settings)  # type: ignore[call-arg]
        )
        alerts = build_alerts(
            AlertsSettings(
                ALERTS_DATABASE_URL=databases.create("alerts"),  # type: ignore[call-arg]
                OUTBOX_POLL_INTERVAL=0.1,
                ALERTS_STREAM_POLL_INTERVAL=0.2,
                ALERTS_STREAM_MAX_PER_ACCOUNT=2,
                ALERTS_RETRY_DELAYS="6",
                ALERTS_WEBHOOK_TIMEOUT=2,
                ALERTS_WEBHOOK_ALLOW="127.0.0.1",
                ALERTS_REDELIVER_LIMIT=3,
                kafka=kafka_settings,
            )
        )
    async with serve(*registry, registry_port) as served_registry, serve(*alerts, alerts_port) as served_alerts:
        yield Platform(served_registry, served_alerts)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------- internal calls are never a client's failures


async def test_failures_from_an_address_the_services_share_never_lock_the_platform_out_of_itself(
    platform: Platform,
) -> None:
    company_id, _, token = await platform.register_company()
    mine = f"/subscriptions/{company_id}"
    assert (await platform.alerts.client.put(mine, json={}, headers=bearer(token))).status_code == 200

    # What a webhook aimed at the registry does, and what any client on the same host can do: fail to
    # authenticate at the registry from 127.0.0.1, the alerts service's own address, until limited.
    registry = platform.registry.client
    bad_internal = [
        (
            await registry.post("/auth/introspect", json={"token": "x"}, headers={"X-Internal-Token": "guess"})
        ).status_code
        for _ in range(FAILURE_LIMIT + 1)
    ]
    bad_bearer = [
        (await registry.get("/accounts/me", headers=bearer(f"bgt_guessed-{n}"))).status_code
        for n in range(FAILURE_LIMIT + 1)
    ]
    assert bad_internal == [401] * FAILURE_LIMIT + [429] and bad_bearer == [429] * (FAILURE_LIMIT + 1)

    # The alerts service still checks tokens at the registry from that address: with the internal secret.
    platform.alerts.guard.resolver.forget()  # type: ignore[attr-defined]
    still = await platform.alerts.client.get(mine, headers=bearer(token))
    assert still.status_code == 200, still.text
    internal = await registry.post(
        "/auth/introspect", json={"token": token}, headers={"X-Internal-Token": AuthSettings().internal_secret}
    )
    assert internal.status_code == 200 and internal.json()["company_id"] == company_id


async def test_a_clients_bad_tokens_are_counted_against_the_client_where_presented_not_at_the_registry(
    platform: Platform,
) -> None:
    company_id, _, token = await platform.register_company()
    answers = [
        (await platform.alerts.client.get(f"/subscriptions/{company_id}", headers=bearer(f"bgt_nope-{n}"))).status_code
        for n in range(FAILURE_LIMIT + 1)
    ]
    assert answers == [401] * FAILURE_LIMIT + [429]  # the alerts service limits the client ...
    assert platform.registry.guard.limiter.retry_after("127.0.0.1") is None  # ... the registry counted nothing
    me = await platform.registry.client.get("/accounts/me", headers=bearer(token))
    assert me.status_code == 200


# --------------------------------------------------------------------------- X-Forwarded-For


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(platform: Platform) -> None:
    """By default no proxy is trusted: a client cannot spread its failures over invented addresses."""
    answers = [
        (
            await platform.registry.client.get(
                "/accounts/me", headers={**bearer("bgt_guess"), "X-Forwarded-For": f"198.51.100.{n}"}
            )
        ).status_code
        for n in range(FAILURE_LIMIT + 1)
    ]
    assert answers == [401] * FAILURE_LIMIT + [429]


@pytest.mark.parametrize("auth_env", [{"BONDGENOOT_TRUSTED_PROXIES": "127.0.0.1"}])
async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(platform: Platform) -> None:
    registry = platform.registry.client

    async def me(forwarded: str) -> int:
        headers = {**bearer("bgt_guess"), "X-Forwarded-For": forwarded}
        return (await registry.get("/accounts/me", headers=headers)).status_code

    assert [await me("203.0.113.9") for _ in range(FAILURE_LIMIT + 1)] == [401] * FAILURE_LIMIT + [429]
    assert await me("203.0.113.10") == 401  # another client behind the proxy is not limited
    assert await me("1.2.3.4, 203.0.113.9") == 429  # the client cannot prepend its way out
    assert platform.registry.guard.limiter.retry_after("127.0.0.1") is None  # the proxy itself is not blamed


async def test_failed_logins_through_the_portal_count_against_the_browser_not_the_portal(
    platform: Platform, tmp_path: Path
) -> None:
    """The portal calls the registry for every browser from one address; its forwarded word must count."""
    _, _, token = await platform.register_company()
    settings = PortalSettings(  # type: ignore[call-arg]
        PORTAL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}",
        BONDGENOOT_ENV="local",
        BONDGENOOT_REGISTRY_URL=platform.registry.url,
        BONDGENOOT_ALERTS_URL=platform.alerts.url,
    )
    app, _ = build_portal(settings)

    @asynccontextmanager
    async def browser(address: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            yield client

    async def log_in(client: httpx.AsyncClient, presented: str) -> int:
        form = (await client.get("/login")).text
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form)
        assert csrf, form
        data = {"token": presented, "csrf_token": csrf.group(1), "next": ""}
        return (await client.post("/login", data=data)).status_code

    async with app.router.lifespan_context(app), browser("203.0.113.7") as mallory, browser("198.51.100.20") as alice:
        answers = [await log_in(mallory, f"bgt_guessed-{n}") for n in range(FAILURE_LIMIT + 1)]
        assert answers == [401] * FAILURE_LIMIT + [429]  # the guesser is limited ...
        assert await log_in(alice, token) == 303  # ... everyone else behind the same portal is not
        assert platform.registry.guard.limiter.retry_after("127.0.0.1") is None  # nor is the portal blamed


# --------------------------------------------------------------------------- the live stream


async def test_a_live_stream_closes_after_its_token_is_revoked(platform: Platform) -> None:
    company_id, account_id, token = await platform.register_company()
    alerts = platform.alerts.client
    assert (await alerts.put(f"/subscriptions/{company_id}", json={}, headers=bearer(token))).status_code == 200
    async with alerts.stream("GET", f"/companies/{company_id}/alerts/stream", headers=bearer(token)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        (ready,) = await next_events(lines, 1)
        assert ready.event == "ready"
        # Re-checks of a valid token keep the stream open.
        await asyncio.sleep(TOKEN_TTL_S * 2.5)
        assert platform.alerts.app.state.alert_stream.open == {account_id: 1}
        revoked = await platform.registry.client.delete(f"/accounts/{account_id}/tokens", headers=bearer(token))
        assert revoked.status_code == 204
        (closed,) = await next_events(lines, 1, timeout=TOKEN_TTL_S * 3 + 5)
        assert closed.event == "closed" and "revoked" in closed.data
        with pytest.raises(StopAsyncIteration):  # and the response ends
            await asyncio.wait_for(anext(lines), 5)
    assert platform.alerts.app.state.alert_stream.open == {}


async def test_concurrent_streams_per_account_are_capped(platform: Platform) -> None:
    company_id, account_id, token = await platform.register_company()
    alerts = platform.alerts.client
    assert (await alerts.put(f"/subscriptions/{company_id}", json={}, headers=bearer(token))).status_code == 200
    url = f"/companies/{company_id}/alerts/stream"
    async with alerts.stream("GET", url, headers=bearer(token)) as first:
        first_lines = first.aiter_lines()  # held: a dropped line iterator closes the connection
        await next_events(first_lines, 1)
        async with alerts.stream("GET", url, headers=bearer(token)) as second:
            second_lines = second.aiter_lines()
            await next_events(second_lines, 1)
            assert platform.alerts.app.state.alert_stream.open == {account_id: 2}
            third = await alerts.get(url, headers=bearer(token))
            assert third.status_code == 429 and "2 open streams" in third.text
    # Both closed by the client: the slots are free again.
    await wait_for(lambda: not platform.alerts.app.state.alert_stream.open, timeout=10, what="slots released")
    async with alerts.stream("GET", url, headers=bearer(token)) as again:
        assert again.status_code == 200


@pytest.fixture
async def projects(platform: Platform, databases: Databases, kafka_settings: KafkaSettings) -> AsyncIterator[Served]:
    """The projects service, introspecting at the platform's registry (its insight stream is long-lived too)."""
    port = free_port()
    with env(BONDGENOOT_REGISTRY_URL=platform.registry.url, AUTH_CACHE_TTL=str(TOKEN_TTL_S)):
        built = build_projects(
            ProjectsSettings(
                PROJECTS_DATABASE_URL=databases.create("projects"),  # type: ignore[call-arg]
                OUTBOX_POLL_INTERVAL=0.1,
                PROJECTS_STREAM_POLL_INTERVAL=0.2,
                PROJECTS_STREAM_MAX_PER_ACCOUNT=2,
                kafka=kafka_settings,
            )
        )
    async with serve(*built, port) as served:
        yield served


async def test_a_project_stream_closes_after_its_token_is_revoked_and_is_capped_per_account(
    platform: Platform, projects: Served
) -> None:
    admin = {"Authorization": f"Bearer {AuthSettings().admin_secret}"}
    institute = f"Lab {uuid.uuid4().hex[:8]}"
    created = await platform.registry.client.post(
        "/accounts", json={"role": "institute", "name": institute}, headers=admin
    )
    assert created.status_code == 201, created.text
    account_id, token = created.json()["id"], created.json()["api_token"]
    body = {
        "title": "Acoustic detection of small drones",
        "summary": "Passive acoustic arrays to detect and classify small UAS in urban areas.",
        "programme": "FSDB",
        "institute": institute,
        "domains": ["aviation-counter-uas"],
        "sought_capabilities": ["MEMS microphone arrays"],
        "deadline": (datetime.now(UTC).date() + timedelta(days=60)).isoformat(),
        "partners_wanted": 3,
        "contact_email": "pi@lab.example",
    }
    posted = await projects.client.post("/projects", json=body, headers=bearer(token))
    assert posted.status_code == 201, posted.text
    url = f"/projects/{posted.json()['id']}/suggestions/stream"
    hub = projects.app.state.stream_hub

    async with projects.client.stream("GET", url, headers=bearer(token)) as first:
        first_lines = first.aiter_lines()
        (ready,) = await next_events(first_lines, 1)
        assert ready.event == "ready"
        async with projects.client.stream("GET", url, headers=bearer(token)) as second:
            second_lines = second.aiter_lines()  # held: a dropped line iterator closes the connection
            await next_events(second_lines, 1)
            assert hub.open == {account_id: 2}
            third = await projects.client.get(url, headers=bearer(token))
            assert third.status_code == 429 and "2 open streams" in third.text
            # Re-checks of a valid token keep the streams open; a revocation closes them.
            await asyncio.sleep(TOKEN_TTL_S * 2.5)
            assert hub.open == {account_id: 2}
            revoked = await platform.registry.client.delete(f"/accounts/{account_id}/tokens", headers=bearer(token))
            assert revoked.status_code == 204
            (closed,) = await next_events(first_lines, 1, timeout=TOKEN_TTL_S * 3 + 5)
            assert closed.event == "closed" and "revoked" in closed.data
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(first_lines), 5)
    await wait_for(lambda: not hub.open, timeout=10, what="slots released")


# --------------------------------------------------------------------------- removing a company


async def _alerts_rows(platform: Platform, company_id: str, alert_ids: list[str]) -> dict[str, int]:
    """How many rows the alerts service holds for the company (attempts: those of ``alert_ids``)."""
    async with platform.alerts.runtime.db.sessions() as session:

        async def count(model: Any, *where: Any) -> int:
            return int((await session.exec(select(func.count()).select_from(model).where(*where))).one())

        return {
            "subscriptions": await count(Subscription, col(Subscription.company_id) == company_id),
            "channels": await count(SubscriptionChannel, col(SubscriptionChannel.company_id) == company_id),
            "deliveries": await count(Delivery, col(Delivery.company_id) == company_id),
            "attempts": await count(DeliveryAttempt, col(DeliveryAttempt.alert_id).in_(alert_ids)),
            "alerts": await count(Alert, col(Alert.company_id) == company_id),
            "alert log": await count(AlertLogEntry, col(AlertLogEntry.company_id) == company_id),
            "tombstones": await count(RemovedCompany, col(RemovedCompany.company_id) == company_id),
        }


async def _alert_ids(platform: Platform, company_id: str) -> list[str]:
    async with platform.alerts.runtime.db.sessions() as session:
        return list((await session.exec(select(Alert.id).where(col(Alert.company_id) == company_id))).all())


async def _until_closed(lines: AsyncIterator[str], timeout: float) -> Sse:
    async with asyncio.timeout(timeout):
        while True:
            (event,) = await next_events(lines, 1)
            if event.event == "closed":
                return event


async def test_removing_a_company_removes_its_alert_data_and_drops_its_queued_deliveries(
    platform: Platform,
    kafka_settings: KafkaSettings,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook, url = receiver
    company_id, _, token = await platform.register_company()
    alerts = platform.alerts.client
    mine = bearer(token)
    assert (await alerts.put(f"/subscriptions/{company_id}", json={"min_score": 0.1}, headers=mine)).status_code == 200
    created = await alerts.put(f"/subscriptions/{company_id}/channels/webhook", json={"url": url}, headers=mine)
    assert created.status_code == 200, created.text
    hook.secret = created.json()["secret"]
    hook.script = [503]  # the first attempt fails: the delivery waits on the retry topic for 6 s

    admin = {"Authorization": f"Bearer {AuthSettings().admin_secret}"}
    async with alerts.stream("GET", f"/companies/{company_id}/alerts/stream", headers=admin) as watching:
        lines = watching.aiter_lines()
        await next_events(lines, 1)
        await raise_alert(kafka_settings, [company_id], title="Raised before the removal")
        await wait_for(lambda: hook.requests, timeout=30, what="the first (failing) attempt")
        alert_ids = await _alert_ids(platform, company_id)
        await wait_for(
            lambda: _equals(_count_attempts(platform, alert_ids), 1), timeout=30, what="the attempt recorded"
        )
        before = await _alerts_rows(platform, company_id, alert_ids)
        assert before["channels"] == 1 and before["deliveries"] == 1 and before["attempts"] == 1

        with caplog.at_level(logging.INFO, logger="services.alerts"):
            gone = await platform.registry.client.delete(f"/companies/{company_id}", headers=mine)
            assert gone.status_code == 204
            await wait_for(
                lambda: _equals(
                    _alerts_rows(platform, company_id, alert_ids), {**dict.fromkeys(before, 0), "tombstones": 1}
                ),
                timeout=30,
                what="the company's alert data removed",
            )
            # The admin's stream of that company closes at its next check ...
            closed = await _until_closed(lines, timeout=TOKEN_TTL_S * 3 + 10)
            assert "the company was removed" in closed.data
            # ... and the retry job still on its topic is dropped, not sent.
            await wait_for(
                lambda: f"dropped: company {company_id} was removed" in caplog.text,
                timeout=30,
                what="the queued retry dropped",
            )
    assert len(hook.requests) == 1

    # A second removal event (a replay, a re-sent event) changes nothing and dead-letters nothing.
    again = envelope(CompanyRemoved(company_id=company_id), source="registry", subject=company_id)
    await produce(kafka_settings, "companies.v1", [(company_id.encode(), again.model_dump_json().encode())])
    processor = next(p for p in platform.alerts.runtime.processors if p.consumer == "alerts.companies")
    await wait_for(lambda: processor.processed >= 2, timeout=30, what="the replayed removal")
    assert (await _alerts_rows(platform, company_id, alert_ids))["tombstones"] == 1
    assert await read_topic(kafka_settings, "companies.v1.dlq", expect=1, timeout=2) == []


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _count_attempts(platform: Platform, alert_ids: list[str]) -> int:
    return (await _alerts_rows(platform, "", alert_ids))["attempts"]


# --------------------------------------------------------------------------- redelivery per account


async def _delivered(platform: Platform, company_id: str) -> str:
    """A delivered delivery of the company, as the delivery worker leaves one."""
    alert_id = str(uuid.uuid4())
    async with platform.alerts.runtime.db.sessions() as session:
        session.add(
            Alert(
                id=alert_id,
                company_id=company_id,
                target_type="project",
                target_id=str(uuid.uuid4()),
                target_title="t",
                programme="FSDB",
                score=0.5,
                rank=1,
                reasons={},
                source_event_id=str(uuid.uuid4()),
            )
        )
        seq = int(datetime.now(UTC).timestamp() * 1e6)
        session.add(AlertLogEntry(seq=seq, alert_id=alert_id, company_id=company_id, event="{}"))
        delivery = Delivery(alert_id=alert_id, company_id=company_id, channel="webhook", status="delivered")
        session.add(delivery)
        await session.commit()
        return delivery.id


async def test_redelivery_is_limited_per_account(platform: Platform) -> None:
    one, _, one_token = await platform.register_company()
    two, _, two_token = await platform.register_company()
    ones = [await _delivered(platform, one) for _ in range(4)]
    twos = await _delivered(platform, two)
    alerts = platform.alerts.client
    # Delivered ones need force: 409 without, and each call counts.
    answers = [(await alerts.post(f"/deliveries/{d}/redeliver", headers=bearer(one_token))).status_code for d in ones]
    assert answers == [409, 409, 409, 429]
    other = await alerts.post(f"/deliveries/{twos}/redeliver", headers=bearer(two_token))
    assert other.status_code == 409  # the other account is not limited (only told to force)


async def test_webhook_tests_count_against_the_same_per_account_limit(platform: Platform) -> None:
    """A webhook test is a POST on demand to a URL the account chose: limited like a redelivery."""
    one, _, token = await platform.register_company()
    alerts = platform.alerts.client
    assert (await alerts.put(f"/subscriptions/{one}", json={}, headers=bearer(token))).status_code == 200
    hook = {"url": "http://127.0.0.1:9/hook"}  # allowed in these tests; nothing listens
    assert (
        await alerts.put(f"/subscriptions/{one}/channels/webhook", json=hook, headers=bearer(token))
    ).status_code == 200
    test = f"/subscriptions/{one}/channels/webhook/test"
    answers = [await alerts.post(test, headers=bearer(token)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200] and not answers[0].json()["ok"]
    limited = await alerts.post(test, headers=bearer(token))
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    delivered = await _delivered(platform, one)
    assert (await alerts.post(f"/deliveries/{delivered}/redeliver", headers=bearer(token))).status_code == 429
