"""Alert delivery against the real broker and PostgreSQL: e-mail (SMTP), webhooks (retry topics), SSE.

The alerts service runs in-process behind a real HTTP server (uvicorn), so the live stream is read
over a real connection. E-mail goes to an aiosmtpd server started here; webhooks go to a stdlib HTTP
receiver started here that checks signatures with its own code, written from services/alerts/README.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.settings import KafkaSettings
from tests.infra import wait_for
from tests.integration.alerts_harness import (
    PUBLIC,
    RETRY_DELAYS,
    WEBHOOK_TIMEOUT_S,
    Mailbox,
    Receiver,
    Service,
    Sse,
    company,
    deliveries,
    delivery_detail,
    equals,
    has_failed,
    inbox_total,
    next_events,
    parts,
    put_confirmed_email,
    put_webhook,
    raise_alert,
    subscribe,
    verify_signature,
    was_delivered,
)
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra


# --------------------------------------------------------------------------- e-mail


async def test_immediate_email_has_text_html_reasons_link_and_a_one_click_unsubscribe(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    channel = await put_confirmed_email(service, box, me, "bids@acoustics.example")
    assert channel["mode"] == "immediate" and channel["active"] is True

    target = await raise_alert(kafka_settings, [me], title="Counter-drone acoustic sensing")
    await wait_for(lambda: box.to("bids@acoustics.example"), timeout=30, what="the alert e-mail")
    (msg,) = box.to("bids@acoustics.example")
    assert msg["Subject"] == "New match: Counter-drone acoustic sensing"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    link = f"{PUBLIC}/projects/{target}"
    for body in (text, html):
        assert "Counter-drone acoustic sensing" in body
        assert "Strong fit on acoustic drone detection" in body
        assert "Matched domains: aviation-counter-uas" in body
        assert "MEMS microphone arrays" in body and "acoustic arrays" in body
        assert link in body
    assert f'href="{link}"' in html

    # RFC 8058 one-click unsubscribe: a POST to the List-Unsubscribe URL, without any login.
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(r"<(.+)>", str(msg["List-Unsubscribe"]))
    assert match, msg["List-Unsubscribe"]
    unsubscribe = match.group(1)
    assert unsubscribe.startswith(f"{service.base_url}/unsubscribe/") and unsubscribe in text
    (delivery,) = await deliveries(service, me)
    assert (delivery["channel"], delivery["status"], delivery["attempts"]) == ("email", "delivered", 1)
    assert msg["Bondgenoot-Delivery"] == delivery["id"]

    tampered = unsubscribe[:-3] + ("AAA" if not unsubscribe.endswith("AAA") else "BBB")
    assert (await service.anonymous.post(tampered)).status_code == 400
    page = await service.anonymous.get(unsubscribe)  # the link in the body: a page that asks, nothing more
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert (await service.client.get(f"/subscriptions/{me}")).json()["channels"]["email"]["active"] is True
    one_click = await service.anonymous.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200, one_click.text
    assert "Unsubscribed" in one_click.text
    again = await service.anonymous.post(unsubscribe)  # idempotent
    assert again.status_code == 200 and "no more Bondgenoot alerts" in again.text

    channels = (await service.client.get(f"/subscriptions/{me}")).json()["channels"]
    assert channels["email"]["active"] is False and channels["email"]["deactivated_at"]
    assert channels["inbox"] == {"active": True}
    # Turning it on again needs the address's owner again: unsubscribing withdrew the confirmation.
    back = await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "bids@acoustics.example"})
    assert back.status_code == 200 and back.json()["active"] is True and back.json()["confirmed"] is False

    await raise_alert(kafka_settings, [me], title="Second target")
    await wait_for(lambda: equals(inbox_total(service, me), 2), timeout=30, what="the second alert in the inbox")
    await asyncio.sleep(1)
    assert len(box.to("bids@acoustics.example")) == 1  # unsubscribed: the inbox has it, e-mail does not
    assert len(await deliveries(service, me)) == 1


async def test_digest_groups_a_days_alerts_per_company(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    first, second, instant = company(), company(), company()
    for c, address, mode in (
        (first, "first@digest.example", "digest"),
        (second, "second@digest.example", "digest"),
        (instant, "instant@digest.example", "immediate"),
    ):
        await subscribe(service, c)
        await put_confirmed_email(service, box, c, address, mode=mode)

    titles = ["Sonar swarm", "Passive radar", "Drone forensics"]
    await raise_alert(kafka_settings, [first, second, instant], title=titles[0])
    await raise_alert(kafka_settings, [first, instant], title=titles[1])
    await raise_alert(kafka_settings, [first, second], title=titles[2])
    await wait_for(lambda: equals(inbox_total(service, first), 3), timeout=30, what="three alerts for the first")
    await wait_for(lambda: len(box.to("instant@digest.example")) == 2, timeout=30, what="the immediate e-mails")
    assert box.to("first@digest.example") == [] and box.to("second@digest.example") == []

    assert await service.delivery.send_due_digests(datetime.now(UTC)) == 0  # today's alerts: tomorrow's digest
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert await service.delivery.send_due_digests(tomorrow) == 2
    (digest,) = box.to("first@digest.example")
    assert digest["Subject"] == "Your Bondgenoot digest: 3 new matches for your company"
    text, html = parts(digest)
    for title in titles:
        assert title in text and title in html
    assert text.count("Why you match:") == 3
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (other,) = box.to("second@digest.example")
    text, _ = parts(other)
    assert titles[0] in text and titles[2] in text and titles[1] not in text

    assert await service.delivery.send_due_digests(tomorrow) == 0  # each alert once
    assert len(box.messages) == 4 + 3  # and the three confirmations
    assert {d["status"] for d in await deliveries(service, first)} == {"delivered"}
    assert all(d["mode"] == "digest" for d in await deliveries(service, first))


# --------------------------------------------------------------------------- webhooks


async def test_webhook_retries_through_retry_topics_and_delivers_a_verifiable_signed_cloudevent(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, url)
    hook.script = [503, "hang", 429]  # a 5xx, a timeout, a 429; then 200

    await raise_alert(kafka_settings, [me], title="Flaky receiver")
    await wait_for(lambda: was_delivered(service, me), timeout=60, what="the webhook delivered")
    assert hook.statuses == [503, 200, 429, 200]  # the "hang" answered 200, but only after the timeout
    (delivery,) = await deliveries(service, me)
    detail = await delivery_detail(service, delivery["id"])
    assert (detail["status"], detail["attempts"]) == ("delivered", 4)
    log = detail["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert [a["status_code"] for a in log] == [503, None, 429, 200]
    assert [a["outcome"] for a in log] == ["retry", "retry", "retry", "delivered"]
    assert "timeout" in log[1]["error"] and log[0]["error"].startswith("HTTP 503")
    assert all(a["latency_ms"] >= 0 for a in log) and log[1]["latency_ms"] >= WEBHOOK_TIMEOUT_S * 1000 * 0.9
    gaps = [b.at - a.at for a, b in zip(hook.requests, hook.requests[1:], strict=False)]
    delays = [float(d) for d in RETRY_DELAYS.split(",")]
    assert gaps[0] >= delays[0] * 0.8 - 0.05 and gaps[2] >= delays[2] * 0.8 - 0.05, gaps  # the backoff grows

    # Every attempt carried the same CloudEvent (its id is the receiver's dedupe key), signed.
    bodies = {r.body for r in hook.requests}
    assert len(bodies) == 1
    event = json.loads(bodies.pop())
    assert event["type"] == "bondgenoot.alert.raised.v1" and event["specversion"] == "1.0"
    assert event["data"]["company_id"] == me and event["data"]["target_title"] == "Flaky receiver"
    assert hook.accepted_event_ids == [event["id"]]
    assert all(r.verified for r in hook.requests)
    first = hook.requests[0].headers
    assert first["Content-Type"].startswith("application/cloudevents+json")
    assert (first["Bondgenoot-Delivery"], first["Bondgenoot-Event-Id"]) == (delivery["id"], event["id"])
    assert [r.headers["Bondgenoot-Attempt"] for r in hook.requests] == ["1", "2", "3", "4"]
    assert not verify_signature("whsec_wrong", first, hook.requests[0].body)

    # The retries went through the retry topics, one per level; the job names the delivery.
    for level in (1, 2, 3):
        (record,) = await read_topic(kafka_settings, f"alerts.webhook.retry.{level}", expect=1, timeout=10)
        assert record.key == delivery["id"].encode()
        assert json.loads(record.value)["subject"] == delivery["id"]
    assert await read_topic(kafka_settings, "alerts.webhook.dlq", expect=1, timeout=2) == []


async def test_a_permanently_failing_webhook_is_dead_lettered_and_redelivered_after_it_recovers(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, url)
    hook.then = 500

    await raise_alert(kafka_settings, [me], title="Receiver down")
    await wait_for(lambda: has_failed(service, me), timeout=60, what="the delivery given up")
    (failed,) = await deliveries(service, me, status="failed")
    assert (failed["attempts"], failed["last_status_code"]) == (4, 500)  # the first try and three retries
    assert hook.statuses == [500, 500, 500, 500]
    (dead,) = await read_topic(kafka_settings, "alerts.webhook.dlq", expect=1, timeout=10)
    assert dead.key == failed["id"].encode()
    assert json.loads(dead.value)["data"]["target_title"] == "Receiver down"

    busy = await service.client.post(f"/deliveries/{uuid.uuid4()!s}/redeliver")
    assert busy.status_code == 404
    hook.then = 200  # the receiver recovered
    again = await service.client.post(f"/deliveries/{failed['id']}/redeliver")
    assert again.status_code == 202, again.text
    assert again.json()["delivery"]["status"] == "pending"
    await wait_for(lambda: hook.accepted_event_ids, timeout=30, what="the redelivery")
    detail = await delivery_detail(service, failed["id"])
    assert (detail["status"], detail["attempts"]) == ("delivered", 5)
    assert await deliveries(service, me, status="failed") == []
    assert all(r.verified for r in hook.requests)

    # A 4xx other than 408/429 is the receiver saying "never": dead-lettered at once.
    hook.then = 410
    await raise_alert(kafka_settings, [me], title="Gone")
    await wait_for(lambda: has_failed(service, me), timeout=30, what="the 410 given up")
    (gone,) = await deliveries(service, me, status="failed")
    assert (gone["attempts"], gone["last_status_code"]) == (1, 410)
    assert len(await read_topic(kafka_settings, "alerts.webhook.dlq", expect=2, timeout=10)) == 2


async def test_a_failure_between_sending_and_recording_sends_once_more_never_zero(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    """At-least-once: the send happened, recording it failed, so the job runs again (one duplicate)."""
    hook, url = receiver
    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, url)
    sender = service.delivery.sender
    real_post = sender.post
    crashed: list[bool] = []

    async def post_then_crash(*args: Any, **kwargs: Any) -> Any:
        outcome = await real_post(*args, **kwargs)
        if not crashed:
            crashed.append(True)
            raise RuntimeError("crash after the POST, before its transaction commits")
        return outcome

    sender.post = post_then_crash  # type: ignore[method-assign]
    await raise_alert(kafka_settings, [me], title="Exactly one accepted")
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="the delivery recorded")
    assert len(hook.requests) == 2  # one duplicate ...
    assert len(hook.accepted_event_ids) == 1  # ... that the receiver drops by CloudEvent id
    (delivery,) = await deliveries(service, me)
    assert delivery["attempts"] == 1  # the crashed attempt's record was rolled back with it


async def test_channels_show_no_secret_and_can_be_removed(service: Service, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    me = company()
    assert (await service.client.put(f"/subscriptions/{me}/channels/webhook", json={"url": url})).status_code == 404
    await subscribe(service, me)
    created = await service.client.put(f"/subscriptions/{me}/channels/webhook", json={"url": url})
    assert created.status_code == 200
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) >= 40
    rotated = await put_webhook(service, me, url)
    assert rotated != secret  # every PUT issues a new secret

    for path in (f"/subscriptions/{me}", f"/subscriptions/{me}/channels"):
        body = (await service.client.get(path)).text
        assert secret not in body and rotated not in body and "secret" not in body
    channels = (await service.client.get(f"/subscriptions/{me}/channels")).json()
    assert channels["webhook"]["url"] == url and channels["webhook"]["active"] is True
    assert channels["email"] is None

    bad = await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "nope", "mode": "weekly"})
    assert bad.status_code == 422
    assert (await service.client.delete(f"/subscriptions/{me}/channels/webhook")).status_code == 204
    assert (await service.client.delete(f"/subscriptions/{me}/channels/webhook")).status_code == 404
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["webhook"] is None

    # Channels and deliveries are the company's own: no token, no access (unsubscribe links excepted).
    assert (await service.anonymous.get(f"/subscriptions/{me}/channels")).status_code == 401
    assert (await service.anonymous.get(f"/subscriptions/{me}/deliveries")).status_code == 401
    assert (await service.anonymous.get(f"/companies/{me}/alerts/stream")).status_code == 401
    assert (await service.anonymous.post(f"/deliveries/{uuid.uuid4()}/redeliver")).status_code == 401


# --------------------------------------------------------------------------- the live stream


async def test_sse_resumes_after_a_disconnect_without_losing_or_repeating_alerts(
    service: Service, kafka_settings: KafkaSettings
) -> None:
    me, other = company(), company()
    await subscribe(service, me)
    await subscribe(service, other)
    stream = f"/companies/{me}/alerts/stream"

    async def alert_me(n: int) -> None:
        # One at a time: events on different partitions may otherwise be handled in either order.
        await raise_alert(kafka_settings, [me], title=f"Alert {n}")
        await wait_for(lambda: equals(inbox_total(service, me), n), timeout=30, what=f"alert {n}")

    await alert_me(1)
    await alert_me(2)

    seen: list[Sse] = []
    async with service.client.stream("GET", stream, params={"after": 0}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        ready, *replayed = await next_events(lines, 3)
        assert ready.event == "ready"
        seen += replayed
        await raise_alert(kafka_settings, [other], title="Not mine")
        await alert_me(3)
        seen += await next_events(lines, 1)  # live
    # Disconnected: two more alerts arrive meanwhile.
    await alert_me(4)
    await alert_me(5)

    last_id = seen[-1].id
    assert last_id is not None
    async with service.client.stream("GET", stream, headers={"Last-Event-ID": last_id}) as response:
        lines = response.aiter_lines()
        ready, *resumed = await next_events(lines, 3)
        assert ready.event == "ready" and json.loads(ready.data) == {"after": int(last_id)}
        seen += resumed
        await alert_me(6)
        seen += await next_events(lines, 1)

    assert all(e.event == "alert" for e in seen)
    titles = [json.loads(e.data)["target_title"] for e in seen]
    assert titles == [f"Alert {n}" for n in range(1, 7)]  # nothing lost, nothing repeated, in order
    ids = [int(e.id or 0) for e in seen]
    assert ids == sorted(set(ids)) and ids[0] > 0  # strictly increasing
    assert [json.loads(e.data)["seq"] for e in seen] == ids
    assert {json.loads(e.data)["company_id"] for e in seen} == {me}

    # A fresh stream (no Last-Event-ID) starts at the present and says where, so a reconnect loses nothing.
    async with service.client.stream("GET", stream) as response:
        (ready,) = await next_events(response.aiter_lines(), 1)
        assert ready.event == "ready" and ready.id == str(ids[-1])
    assert (await service.client.get(stream, headers={"Last-Event-ID": "nope"})).status_code == 422
