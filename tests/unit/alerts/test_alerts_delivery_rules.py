"""Delivery rules without infrastructure: retry timing, classification, digest times, topics, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from services.alerts.delivery import DeliveryService, delivery_topics, digest_cutoff
from services.alerts.destination import DestinationPolicy
from services.alerts.settings import DEV_TOKEN_SECRET, AlertsSettings
from services.alerts.webhook import WebhookSender, is_retryable_status
from shared.events.base import CloudEvent
from shared.outbox import UnitOfWorkFactory


def service(**env: object) -> DeliveryService:
    settings = AlertsSettings(**env)  # type: ignore[arg-type]
    return DeliveryService(settings, UnitOfWorkFactory(None, source="alerts"))  # type: ignore[arg-type]


def job(i: int, at: datetime) -> CloudEvent:
    return CloudEvent(
        id=f"job-{i}", source="/services/alerts", type="bondgenoot.alert.raised.v1", subject="d", time=at, data={}
    )


def test_retry_due_times_grow_per_level_with_bounded_deterministic_jitter() -> None:
    svc = service(ALERTS_RETRY_DELAYS="10,60,240", ALERTS_RETRY_JITTER=0.2)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for level, delay in enumerate((10, 60, 240), start=1):
        waits = [(svc.due_at(job(i, at), level) - at).total_seconds() for i in range(200)]
        assert all(delay * 0.8 <= w <= delay * 1.2 for w in waits), (level, min(waits), max(waits))
        assert len(set(waits)) > 150  # jittered, not all equal
    assert svc.due_at(job(1, at), 2) == svc.due_at(job(1, at), 2)  # producer and consumer agree


def test_retry_wait_reads_the_due_time_from_the_record() -> None:
    svc = service(ALERTS_RETRY_DELAYS="5", ALERTS_RETRY_JITTER=0)
    now = datetime.now(UTC)
    assert 4 < svc.retry_wait_s(job(1, now).model_dump_json().encode(), 1) <= 5
    assert svc.retry_wait_s(job(1, now - timedelta(seconds=10)).model_dump_json().encode(), 1) == 0
    assert svc.retry_wait_s(b"not json", 1) == 0  # the processor dead-letters it


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (301, False),
    ],
)
def test_which_answers_are_retried(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_the_digest_time_is_the_last_daily_boundary() -> None:
    day = datetime(2026, 3, 10, tzinfo=UTC)
    assert digest_cutoff(day.replace(hour=7, minute=0), 7) == day.replace(hour=7)
    assert digest_cutoff(day.replace(hour=6, minute=59), 7) == day.replace(hour=7) - timedelta(days=1)
    assert digest_cutoff(day.replace(hour=23), 7) == day.replace(hour=7)


def test_topics_follow_the_retry_ladder() -> None:
    assert delivery_topics(2) == (
        "alerts.deliveries.v1",
        "alerts.email.retry.1",
        "alerts.webhook.retry.1",
        "alerts.email.retry.2",
        "alerts.webhook.retry.2",
        "alerts.email.dlq",
        "alerts.webhook.dlq",
    )


def test_settings_parse_delays_and_refuse_production_without_a_token_secret() -> None:
    assert AlertsSettings(ALERTS_RETRY_DELAYS="0.1, 0.2,0.4").retry_delays_s == (0.1, 0.2, 0.4)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        AlertsSettings(ALERTS_RETRY_DELAYS="")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ALERTS_TOKEN_SECRET is not set"):
        AlertsSettings(BONDGENOOT_ENV="production", ALERTS_DATABASE_URL="postgresql://db/alerts")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (DEV_TOKEN_SECRET, "is the local development default"),
        ("short-but-secret-0123", "is shorter than 32 characters"),
        ("", "is not set"),
    ],
)
def test_the_link_signing_key_has_no_public_default_outside_local_mode(secret: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=f"ALERTS_TOKEN_SECRET {problem}") as refused:
        AlertsSettings(  # type: ignore[call-arg]
            BONDGENOOT_ENV="production", ALERTS_DATABASE_URL="postgresql://db/alerts", ALERTS_TOKEN_SECRET=secret
        )
    assert not secret or secret not in str(refused.value)  # never printed
    strong = AlertsSettings(  # type: ignore[call-arg]
        BONDGENOOT_ENV="production", ALERTS_DATABASE_URL="postgresql://db/alerts", ALERTS_TOKEN_SECRET="k" * 40
    )
    assert strong.unsubscribe_key == b"k" * 40
    assert AlertsSettings(BONDGENOOT_ENV="test").unsubscribe_key == DEV_TOKEN_SECRET.encode()  # type: ignore[call-arg]


async def test_the_webhook_sender_signs_and_classifies_answers() -> None:
    seen: list[httpx.Request] = []
    busy_answer = httpx.Response(503, stream=httpx.ByteStream(b"busy"))
    answers = iter([httpx.Response(204), busy_answer, httpx.Response(400), httpx.Response(429)])

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    sender = WebhookSender(timeout_s=2, policy=DestinationPolicy())
    sender._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    kw = {"secret": "whsec_x", "body": b'{"id":"e"}', "event_id": "e", "delivery_id": "d", "attempt": 1}
    ok, busy, bad, slow = [await sender.post("https://hooks.example/x", **kw) for _ in range(4)]  # type: ignore[arg-type]
    assert ok.ok and ok.status_code == 204
    assert (busy.ok, busy.retryable, busy.error) == (False, True, "HTTP 503: busy")
    assert (bad.ok, bad.retryable) == (False, False)
    assert (slow.ok, slow.retryable) == (False, True)
    request = seen[0]
    assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert request.headers["bondgenoot-signature"].startswith("v1=") and request.content == b'{"id":"e"}'

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sender._client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    down = await sender.post("https://hooks.example/x", **kw)  # type: ignore[arg-type]
    assert (down.ok, down.retryable, down.status_code) == (False, True, None)
    await sender.aclose()
