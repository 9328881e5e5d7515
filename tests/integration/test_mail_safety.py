"""Mail that cannot be broken or abused: headers from others' text, messages that cannot be built,
addresses that confirm before they get alerts, and unsubscribe links that ask before they act.

The alerts service runs on the real broker and PostgreSQL, mail goes to a local aiosmtpd server
(tests/integration/alerts_harness.py).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts.delivery_models import EmailConfirmation, SubscriptionChannel
from shared.settings import KafkaSettings
from tests.infra import wait_for
from tests.integration.alerts_harness import (
    Mailbox,
    Service,
    company,
    deliveries,
    equals,
    has_failed,
    inbox_total,
    put_confirmed_email,
    raise_alert,
    subscribe,
    was_delivered,
)
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

INJECTION = "Counter-drone sensing\r\nBcc: everyone@victim.example\u2028X-Priority: 1"


def unsubscribe_link(box: Mailbox, address: str) -> str:
    match = re.fullmatch(r"<(.+)>", str(box.to(address)[-1]["List-Unsubscribe"]))
    assert match
    return match.group(1)


async def test_a_title_that_would_break_the_header_arrives_on_one_line_with_no_extra_recipient(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    await put_confirmed_email(service, box, me, "bids@acoustics.example")
    await raise_alert(kafka_settings, [me], title=INJECTION)
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="the alert e-mail delivered")
    (msg,) = box.to("bids@acoustics.example")
    # One line (a long one is folded by the encoder, which is not a line of its own).
    assert msg["Subject"].strip() == "New match: Counter-drone sensing Bcc: everyone@victim.example X-Priority: 1"
    assert msg["Bcc"] is None and msg["X-Priority"] is None
    assert [rcpts for rcpts, m in box.messages if m is msg] == [["bids@acoustics.example"]]
    assert box.to("everyone@victim.example") == []


async def _legacy_channel(svc: Service, company_id: str, address: str) -> None:
    """An e-mail channel (and its confirmation) as an older version stored it, before addresses were checked."""
    async with svc.runtime.db.sessions() as session:
        session.add(SubscriptionChannel(company_id=company_id, channel="email", address=address, mode="immediate"))
        session.add(EmailConfirmation(company_id=company_id, address=address, confirmed_at=datetime.now(UTC)))
        await session.commit()


async def test_a_message_that_cannot_be_built_fails_with_the_reason_and_is_redeliverable(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    await _legacy_channel(service, me, "bïds@acoustics.example")  # a non-ASCII local part: not sendable here
    await raise_alert(kafka_settings, [me], title="Unsendable")
    await wait_for(lambda: has_failed(service, me), timeout=30, what="the delivery failed")
    (failed,) = await deliveries(service, me, status="failed")
    assert failed["attempts"] == 1  # permanent: no retry ladder
    assert "non-ASCII local part" in failed["last_error"]
    # The job was handled (the delivery's own dead-letter topic), not dead-lettered by the consumer.
    assert len(await read_topic(kafka_settings, "alerts.email.dlq", expect=1, timeout=10)) == 1
    assert await read_topic(kafka_settings, "alerts.deliveries.v1.dlq", expect=1, timeout=2) == []
    assert not service.runtime.halt_reason

    # The company fixes the address; once confirmed, the failed delivery is redelivered.
    await put_confirmed_email(service, box, me, "bids@acoustics.example")
    again = await service.client.post(f"/deliveries/{failed['id']}/redeliver")
    assert again.status_code == 202, again.text
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="the redelivery")
    assert [m["Subject"] for m in box.to("bids@acoustics.example")] == ["New match: Unsendable"]


async def test_digests_with_such_text_are_sent_or_fail_but_never_stay_pending(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    fine, broken = company(), company()
    for c in (fine, broken):
        await subscribe(service, c)
    await put_confirmed_email(service, box, fine, "digest@acoustics.example", mode="digest")
    await _legacy_channel(service, broken, "dïgest@acoustics.example")
    async with service.runtime.db.sessions() as session:
        legacy = await session.get(SubscriptionChannel, (broken, "email"))
        assert legacy is not None
        legacy.mode = "digest"
        session.add(legacy)
        await session.commit()
    await raise_alert(kafka_settings, [fine, broken], title=INJECTION)
    await wait_for(lambda: equals(inbox_total(service, broken), 1), timeout=30, what="the alerts")
    await wait_for(lambda: equals(inbox_total(service, fine), 1), timeout=30, what="the alerts")
    assert await service.delivery.send_due_digests(datetime.now(UTC) + timedelta(days=1)) == 1
    (digest,) = box.to("digest@acoustics.example")
    assert digest["Bcc"] is None
    (failed,) = await deliveries(service, broken)
    assert failed["status"] == "failed" and "non-ASCII local part" in failed["last_error"]


async def test_an_address_receives_alerts_only_after_it_confirmed_and_again_after_it_changed(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    put = await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "victim@else.example"})
    assert put.status_code == 200 and put.json()["confirmed"] is False
    await wait_for(lambda: box.confirmations("victim@else.example"), timeout=30, what="the confirmation e-mail")
    (confirmation,) = box.confirmations("victim@else.example")
    assert confirmation["List-Unsubscribe"] is None  # it subscribes nobody to anything

    # Not confirmed: the alert reaches the inbox, not the address.
    await raise_alert(kafka_settings, [me], title="Before confirming")
    await wait_for(lambda: equals(inbox_total(service, me), 1), timeout=30, what="the alert in the inbox")
    await asyncio.sleep(1)
    assert box.to("victim@else.example") == [] and await deliveries(service, me) == []
    # Opening the link (as a mail scanner would) confirms nothing.
    link = box.confirmation_link("victim@else.example")
    assert (await service.anonymous.get(link)).status_code == 200
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]["confirmed"] is False
    # A second PUT of the same address does not mail it again (not within ten minutes).
    assert (
        await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "victim@else.example"})
    ).status_code == 200
    await asyncio.sleep(0.5)
    assert len(box.confirmations("victim@else.example")) == 1

    # The owner confirms: alerts follow.
    confirmed = await service.anonymous.post(link)
    assert confirmed.status_code == 200 and "Address confirmed" in confirmed.text
    await raise_alert(kafka_settings, [me], title="After confirming")
    await wait_for(lambda: box.to("victim@else.example"), timeout=30, what="the first alert e-mail")

    # A new address starts unconfirmed; the old link does not confirm it.
    moved = await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "new@else.example"})
    assert moved.json()["confirmed"] is False
    stale = await service.anonymous.post(link)
    assert stale.status_code == 409 and "no longer go to the address" in stale.text
    await raise_alert(kafka_settings, [me], title="While moving")
    await wait_for(lambda: equals(inbox_total(service, me), 3), timeout=30, what="the third alert")
    await asyncio.sleep(1)
    assert box.to("new@else.example") == [] and len(box.to("victim@else.example")) == 1
    forged = link.rsplit(".", 1)[0] + ".AAAA"
    assert (await service.anonymous.post(forged)).status_code == 400


@pytest.mark.parametrize("overrides", [{"ALERTS_WEBHOOK_ALLOW": "127.0.0.1", "ALERTS_CONFIRMATION_TTL": 1}])
async def test_a_confirmation_link_expires(service: Service, mailbox: tuple[Mailbox, int]) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    assert (
        await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": "late@else.example"})
    ).status_code == 200
    await wait_for(lambda: box.confirmations("late@else.example"), timeout=30, what="the confirmation e-mail")
    await asyncio.sleep(2)
    link = box.confirmation_link("late@else.example")
    assert (await service.anonymous.get(link)).status_code == 410
    expired = await service.anonymous.post(link)
    assert expired.status_code == 410 and "expired" in expired.text
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]["confirmed"] is False


@pytest.mark.parametrize("overrides", [{"ALERTS_WEBHOOK_ALLOW": "127.0.0.1", "ALERTS_CONFIRMATION_LIMIT": 2}])
async def test_an_account_cannot_mail_strangers_in_bulk_through_confirmations(
    service: Service, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    answers = [
        (
            await service.client.put(f"/subscriptions/{me}/channels/email", json={"address": f"{n}@else.example"})
        ).status_code
        for n in range(3)
    ]
    assert answers == [200, 200, 429]
    await wait_for(lambda: box.confirmations("1@else.example"), timeout=30, what="the second confirmation")
    await asyncio.sleep(0.5)
    assert box.confirmations("2@else.example") == []
    channel = (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]
    assert channel["address"] == "1@else.example"  # the refused PUT changed nothing


async def test_unsubscribe_asks_on_get_acts_on_post_and_only_for_the_address_it_was_sent_to(
    service: Service, kafka_settings: KafkaSettings, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    me = company()
    await subscribe(service, me)
    await put_confirmed_email(service, box, me, "old@acoustics.example")
    await raise_alert(kafka_settings, [me], title="To the old address")
    await wait_for(lambda: box.to("old@acoustics.example"), timeout=30, what="the alert e-mail")
    old_link = unsubscribe_link(box, "old@acoustics.example")

    await put_confirmed_email(service, box, me, "new@acoustics.example")
    stale = await service.anonymous.post(old_link)  # a link from a mail to the address the channel had
    assert stale.status_code == 200 and "nothing was changed" in stale.text
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]["active"] is True

    await raise_alert(kafka_settings, [me], title="To the new address")
    await wait_for(lambda: box.to("new@acoustics.example"), timeout=30, what="the alert e-mail")
    new_link = unsubscribe_link(box, "new@acoustics.example")
    for _ in range(3):  # a mail scanner, a preview, the reader: GET asks, changes nothing
        page = await service.anonymous.get(new_link)
        assert page.status_code == 200 and "<form" in page.text
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]["active"] is True
    one_click = await service.anonymous.post(
        new_link,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert (await service.client.get(f"/subscriptions/{me}/channels")).json()["email"]["active"] is False
