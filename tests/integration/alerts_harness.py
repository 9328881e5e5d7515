"""The alerts service as the integration tests drive it: behind uvicorn on real Kafka and PostgreSQL,
with a local SMTP server (aiosmtpd) and a local webhook receiver whose signature check is written
from services/alerts/README.md alone.

The receivers listen on 127.0.0.1, which the webhook destination policy refuses unless allowed: the
``service`` fixture allows exactly that address (``ALERTS_WEBHOOK_ALLOW``); a test overrides the
settings by parametrizing ``overrides``.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from services.alerts.bootstrap import build
from services.alerts.delivery import DeliveryService
from services.alerts.settings import AlertsSettings
from shared.events.base import envelope
from shared.events.suggestions import CapabilityMatch, MatchReasons, SuggestionItem, SuggestionsComputed
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, admin_headers, free_port, wait_for
from tests.integration.kafka_tools import produce

RETRY_DELAYS = "0.3,0.6,1.2"
WEBHOOK_TIMEOUT_S = 1.5  # short enough for quick tests, long enough for a loaded machine
PUBLIC = "https://bondgenoot.example"


# --------------------------------------------------------------------------- a local SMTP server


CONFIRM_SUBJECT = "Confirm Bondgenoot alerts to this address"


class Mailbox:
    """aiosmtpd handler that keeps every message it receives (``to``: alert mail, ``confirmations``: the rest)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope_: Any) -> str:
        msg = email.message_from_bytes(envelope_.content, policy=default_policy)
        self.messages.append((list(envelope_.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts and m["Subject"] != CONFIRM_SUBJECT]

    def confirmations(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts and m["Subject"] == CONFIRM_SUBJECT]

    def confirmation_link(self, address: str) -> str:
        """The link in the latest confirmation e-mail to ``address``."""
        text = self.confirmations(address)[-1].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        match = re.search(r"(https?://\S+/confirm-email/\S+)", text)
        assert match, text
        return match.group(1)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


# --------------------------------------------------------------------------- a local webhook receiver


def verify_signature(secret: str, headers: Any, body: bytes, *, tolerance_s: int = 300) -> bool:
    """A receiver's check, written from the README alone: HMAC-SHA256 over "{timestamp}.{body}"."""
    timestamp = headers.get("Bondgenoot-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode("utf-8"), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = [
        part.strip()[3:]
        for part in headers.get("Bondgenoot-Signature", "").split(",")
        if part.strip().startswith("v1=")
    ]
    return any(hmac.compare_digest(expected, sig) for sig in given)


@dataclass
class Received:
    headers: httpx.Headers
    body: bytes
    status: int
    verified: bool
    at: float


@dataclass
class Receiver:
    """Answers from ``script`` first, then ``then``: a status code, "hang" (outlast the sender's timeout) or
    "redirect" (a 302 to the cloud metadata address)."""

    script: list[int | str] = field(default_factory=list)
    then: int = 200
    secret: str = ""
    requests: list[Received] = field(default_factory=list)
    accepted_event_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, headers: httpx.Headers, body: bytes) -> int | str:
        with self.lock:
            action = self.script.pop(0) if self.script else self.then
            verified = verify_signature(self.secret, headers, body)
            status = action if isinstance(action, int) else 302 if action == "redirect" else 200
            if status == 200 and not verified:
                status = 401
            if status == 200:
                event_id = json.loads(body)["id"]
                if event_id not in self.accepted_event_ids:  # receivers dedupe on the CloudEvent id
                    self.accepted_event_ids.append(event_id)
            self.requests.append(Received(headers, body, status, verified, time.time()))
            return action if action in ("hang", "redirect") else status

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            action = state.respond(httpx.Headers(list(self.headers.items())), body)  # names: any case
            if action == "hang":
                time.sleep(WEBHOOK_TIMEOUT_S + 0.5)
                action = 200
            if action == "redirect":  # somewhere a webhook must never reach
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            else:
                self.send_response(int(action))
            self.send_header("Content-Length", "2")
            self.end_headers()
            try:
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up (timeout) and closed the connection

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/bondgenoot"
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the service behind uvicorn


@dataclass
class Service:
    client: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    runtime: ServiceRuntime
    app: FastAPI
    base_url: str

    @property
    def delivery(self) -> DeliveryService:
        return self.app.state.alert_delivery  # type: ignore[no-any-return]


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test changes (parametrize ``overrides`` to replace this)."""
    return {}


@pytest.fixture
async def service(
    databases: Databases, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int], overrides: dict[str, Any]
) -> AsyncIterator[Service]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = dict(
        ALERTS_DATABASE_URL=databases.create("alerts"),
        OUTBOX_POLL_INTERVAL=0.1,
        PUBLIC_BASE_URL=PUBLIC,
        ALERTS_UNSUBSCRIBE_BASE_URL=base_url,
        ALERTS_SMTP_HOST="127.0.0.1",
        ALERTS_SMTP_PORT=mailbox[1],
        ALERTS_SMTP_TLS="none",
        ALERTS_SMTP_TIMEOUT=5,
        ALERTS_TOKEN_SECRET="test-unsubscribe-secret-0123456789",
        ALERTS_RETRY_DELAYS=RETRY_DELAYS,
        ALERTS_WEBHOOK_TIMEOUT=WEBHOOK_TIMEOUT_S,
        ALERTS_DIGEST_POLL_INTERVAL=3600,
        ALERTS_STREAM_POLL_INTERVAL=0.2,
        # The receivers started here listen on 127.0.0.1: allowed explicitly, like a developer would.
        ALERTS_WEBHOOK_ALLOW="127.0.0.1",
        kafka=kafka_settings,
    )
    settings = AlertsSettings(**{**values, **overrides})
    app, runtime = build(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", timeout_graceful_shutdown=2
        )
    )
    async with runtime.lifespan():
        serving = asyncio.create_task(server.serve())
        await wait_for(lambda: server.started, timeout=10, what="uvicorn serving")
        await wait_for(runtime.kafka_ready.is_set, timeout=30, what="alerts connected to Kafka")
        async with (
            httpx.AsyncClient(base_url=base_url, headers=admin_headers(), timeout=10) as client,
            httpx.AsyncClient(base_url=base_url, timeout=10) as anonymous,
        ):
            yield Service(client, anonymous, runtime, app, base_url)
        server.should_exit = True
        await serving


# --------------------------------------------------------------------------- helpers


def company() -> str:
    return str(uuid.uuid4())


def suggestion(target_id: str, companies: list[str], *, title: str) -> bytes:
    items = [
        SuggestionItem(
            company_id=c,
            company_name=f"Company {rank}",
            country="BE",
            rank=rank,
            score=0.8,
            reasons=MatchReasons(
                summary="Strong fit on acoustic drone detection",
                matched_domains=["aviation-counter-uas"],
                capability_matches=[
                    CapabilityMatch(sought="acoustic arrays", capability="MEMS microphone arrays", similarity=0.71)
                ],
                top_terms=["acoustic", "drone"],
            ),
        )
        for rank, c in enumerate(companies, start=1)
    ]
    data = SuggestionsComputed(
        target_type="project",
        target_id=target_id,
        target_title=title,
        programme="FSDB",
        domains=["aviation-counter-uas"],
        algorithm_version="hybrid-1",
        computed_at=datetime.now(UTC),
        suggestions=items,
    )
    return envelope(data, source="matching", subject=target_id).model_dump_json().encode()


async def raise_alert(kafka: KafkaSettings, companies: list[str], *, title: str) -> str:
    target = str(uuid.uuid4())
    await produce(kafka, "suggestions.v1", [(target.encode(), suggestion(target, companies, title=title))])
    return target


async def subscribe(svc: Service, company_id: str) -> None:
    response = await svc.client.put(f"/subscriptions/{company_id}", json={"min_score": 0.1})
    assert response.status_code == 200, response.text


async def inbox_total(svc: Service, company_id: str) -> int:
    response = await svc.client.get(f"/companies/{company_id}/alerts")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def deliveries(svc: Service, company_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await svc.client.get(f"/subscriptions/{company_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def delivery_detail(svc: Service, delivery_id: str) -> dict[str, Any]:
    response = await svc.client.get(f"/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def put_webhook(svc: Service, company_id: str, url: str) -> str:
    response = await svc.client.put(f"/subscriptions/{company_id}/channels/webhook", json={"url": url})
    assert response.status_code == 200, response.text
    return str(response.json()["secret"])


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None, msg
    return text.get_content(), html.get_content()  # type: ignore[attr-defined]


async def equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def has_failed(svc: Service, company_id: str) -> bool:
    return bool(await deliveries(svc, company_id, status="failed"))


async def was_delivered(svc: Service, company_id: str) -> bool:
    rows = await deliveries(svc, company_id)
    return bool(rows) and rows[0]["status"] == "delivered"


@dataclass
class Sse:
    id: str | None
    event: str | None
    data: str


async def next_events(lines: AsyncIterator[str], n: int, *, timeout: float = 30) -> list[Sse]:
    """Read ``n`` complete events (comments skipped) from an SSE line iterator."""
    out: list[Sse] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while len(out) < n:
            line = await anext(lines)
            if line == "":
                if "data" in current or "event" in current:
                    out.append(Sse(current.get("id"), current.get("event"), current.get("data", "")))
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                current[name] = current[name] + "\n" + value if name == "data" and name in current else value
    return out


async def put_confirmed_email(
    svc: Service, box: Mailbox, company_id: str, address: str, *, mode: str = "immediate"
) -> dict[str, Any]:
    """Set the e-mail channel and confirm the address as its owner would: open the link, press the button."""
    put = await svc.client.put(f"/subscriptions/{company_id}/channels/email", json={"address": address, "mode": mode})
    assert put.status_code == 200, put.text
    assert put.json()["confirmed"] is False
    await wait_for(lambda: box.confirmations(address), timeout=30, what=f"the confirmation e-mail to {address}")
    link = box.confirmation_link(address)
    page = await svc.anonymous.get(link)
    assert page.status_code == 200 and '<form method="post">' in page.text, page.text
    confirmed = await svc.anonymous.post(link)
    assert confirmed.status_code == 200 and "Address confirmed" in confirmed.text, confirmed.text
    channels = (await svc.client.get(f"/subscriptions/{company_id}/channels")).json()
    assert channels["email"]["confirmed"] is True
    return dict(channels["email"])
