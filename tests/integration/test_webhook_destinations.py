"""Webhooks cannot reach inside: the destination policy at registration and at connection time, no
redirects, capped answers, and redelivery that needs ``force`` for a delivered delivery.

The alerts service runs on the real broker and PostgreSQL (tests/integration/alerts_harness.py).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from services.alerts.delivery_models import EXCERPT_CHARS, SubscriptionChannel
from services.alerts.destination import DestinationPolicy, IPAddress
from services.alerts.webhook import WebhookSender
from shared.settings import KafkaSettings
from tests.infra import wait_for
from tests.integration.alerts_harness import (
    WEBHOOK_TIMEOUT_S,
    Receiver,
    Service,
    company,
    deliveries,
    delivery_detail,
    has_failed,
    put_webhook,
    raise_alert,
    subscribe,
    was_delivered,
)
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

NO_ALLOWLIST = pytest.mark.parametrize("overrides", [{"ALERTS_WEBHOOK_ALLOW": ""}])

INSIDE = [
    ("http://127.0.0.1:8001/auth/introspect", "127.0.0.1 is a loopback address"),
    ("http://localhost:8001/auth/introspect", "localhost resolves to 127.0.0.1, which is a loopback address"),
    ("http://[::1]:8005/", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:8001/", "loopback, embedded in ::ffff:7f00:1"),
    ("http://10.0.0.8/hook", "10.0.0.8 is a private address"),
    ("http://192.168.1.1/admin", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.251/", "multicast"),
    ("http://0.0.0.0:8001/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::1]/", "private"),
]


@NO_ALLOWLIST
async def test_webhook_urls_that_point_inside_are_refused_at_registration_and_nothing_is_written(
    service: Service,
) -> None:
    me = company()
    await subscribe(service, me)
    for url, reason in INSIDE:
        response = await service.client.put(f"/subscriptions/{me}/channels/webhook", json={"url": url})
        assert response.status_code == 422, (url, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "url"] and reason in error["msg"], (url, error)
    channels = (await service.client.get(f"/subscriptions/{me}/channels")).json()
    assert channels["webhook"] is None


async def _insert_channel(svc: Service, company_id: str, url: str) -> None:
    """A webhook row as an older version (without the policy) or a since-tightened allowlist left it."""
    async with svc.runtime.db.sessions() as session:
        session.add(SubscriptionChannel(company_id=company_id, channel="webhook", url=url, signing_secret="whsec_x"))
        await session.commit()


@NO_ALLOWLIST
async def test_a_stored_webhook_that_points_inside_is_refused_at_connection_time_and_marked_failed(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver  # listening on 127.0.0.1, which this service does not allow
    me = company()
    await subscribe(service, me)
    await _insert_channel(service, me, url)
    await raise_alert(kafka_settings, [me], title="Aimed inside")
    await wait_for(lambda: has_failed(service, me), timeout=30, what="the delivery refused")
    (failed,) = await deliveries(service, me, status="failed")
    assert failed["attempts"] == 1 and failed["last_status_code"] is None
    assert failed["last_error"].startswith("destination refused: 127.0.0.1 is a loopback address")
    assert hook.requests == []  # nothing was sent
    (dead,) = await read_topic(kafka_settings, "alerts.webhook.dlq", expect=1, timeout=10)
    assert dead.key == failed["id"].encode()


async def test_dns_rebinding_after_registration_is_refused_at_connection_and_the_delivery_is_redeliverable(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    """The name resolves to an allowed address when registered, then moves: the connection is refused."""
    hook, url = receiver
    port = url.split(":")[2].split("/")[0]
    dns: dict[str, str] = {"hooks.partner.test": "127.0.0.1"}

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        if host not in dns:
            raise socket.gaierror(f"{host}: name not known")
        return [ipaddress.ip_address(dns[host])]

    policy = DestinationPolicy.from_settings(allow=["127.0.0.1"], local_mode=True, resolver=resolve)
    await service.delivery.sender.aclose()
    service.delivery.destinations = policy
    service.delivery.sender = WebhookSender(timeout_s=WEBHOOK_TIMEOUT_S, policy=policy)

    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, f"http://hooks.partner.test:{port}/hooks/bondgenoot")
    dns["hooks.partner.test"] = "127.0.0.2"  # rebound: loopback, not on the allowlist
    await raise_alert(kafka_settings, [me], title="Rebound")
    await wait_for(lambda: has_failed(service, me), timeout=30, what="the rebound delivery refused")
    (failed,) = await deliveries(service, me, status="failed")
    assert "hooks.partner.test resolves to 127.0.0.2, which is a loopback address" in failed["last_error"]
    assert hook.requests == []

    dns["hooks.partner.test"] = "127.0.0.1"  # the partner fixed its DNS: redeliver
    assert (await service.client.post(f"/deliveries/{failed['id']}/redeliver")).status_code == 202
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="the redelivery")
    assert len(hook.accepted_event_ids) == 1


async def test_a_redirect_is_not_followed_and_is_not_a_success(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, url)
    hook.then = "redirect"  # type: ignore[assignment]
    await raise_alert(kafka_settings, [me], title="Moved")
    await wait_for(lambda: has_failed(service, me), timeout=30, what="the redirect given up")
    (failed,) = await deliveries(service, me, status="failed")
    assert (failed["attempts"], failed["last_status_code"]) == (1, 302)
    assert failed["last_error"] == (
        "HTTP 302: redirects are not followed (Location: http://169.254.169.254/latest/meta-data/)"
    )
    assert hook.statuses == [302]  # one request, to the registered URL only


class HugeAnswer:
    """A receiver that answers 400 with a body of ``size`` bytes of text lines, counting what it got to send."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.done = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            fields = dict(line.partition(b":")[::2] for line in head.split(b"\r\n")[1:])
            length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n" % self.size)
            chunk = (b"rejected: unknown event\r\n\x1b[31mred\x00" + b"x" * 990 + b"\n") * 64
            try:
                while self.sent < self.size:
                    piece = chunk[: self.size - self.sent]
                    conn.sendall(piece)
                    self.sent += len(piece)
            except OSError:
                pass  # the sender stopped reading and closed: what we want
        self.done.set()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def huge() -> Iterator[HugeAnswer]:
    server = HugeAnswer(256 * 1024 * 1024)
    yield server
    server.close()


# A whole-exchange timeout long enough for a loaded machine: one attempt, one connection.
@pytest.mark.parametrize("overrides", [{"ALERTS_WEBHOOK_ALLOW": "127.0.0.1", "ALERTS_WEBHOOK_TIMEOUT": 20}])
async def test_only_the_head_of_an_answer_is_read_and_the_attempt_log_keeps_one_short_line(
    service: Service, kafka_settings: KafkaSettings, huge: HugeAnswer
) -> None:
    me = company()
    await subscribe(service, me)
    await put_webhook(service, me, huge.url)
    await raise_alert(kafka_settings, [me], title="Chatty receiver")
    await wait_for(lambda: has_failed(service, me), timeout=60, what="the 400 given up")
    assert huge.done.wait(10)
    # Socket buffers take a few MB before the sender closes; reading all 256 MB is what must not happen.
    assert huge.sent < 64 * 1024 * 1024, huge.sent
    (failed,) = await deliveries(service, me, status="failed")
    (attempt,) = (await delivery_detail(service, failed["id"]))["attempt_log"]  # one attempt: a 400 is final
    error: str = attempt["error"]
    assert error.startswith("HTTP 400: rejected: unknown event [31mred xxx")  # ESC, NUL, CR, LF: spaces
    assert len(error) <= EXCERPT_CHARS and error.isprintable()
    assert attempt["status_code"] == 400 and attempt["latency_ms"] >= 0


@pytest.mark.parametrize("overrides", [{"ALERTS_WEBHOOK_ALLOW": "127.0.0.1", "ALERTS_REDELIVER_LIMIT": 3}])
async def test_a_delivered_delivery_is_redelivered_only_with_force_and_redelivery_is_rate_limited(
    service: Service, kafka_settings: KafkaSettings, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    me = company()
    await subscribe(service, me)
    hook.secret = await put_webhook(service, me, url)
    await raise_alert(kafka_settings, [me], title="Delivered once")
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="the delivery")
    (delivered,) = await deliveries(service, me)
    again = f"/deliveries/{delivered['id']}/redeliver"

    refused = await service.client.post(again)
    assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
    forced = await service.client.post(again, params={"force": "true"})
    assert forced.status_code == 202, forced.text
    await wait_for(lambda: len(hook.requests) == 2, timeout=30, what="the forced redelivery")
    await wait_for(lambda: was_delivered(service, me), timeout=30, what="delivered again")

    assert (await service.client.post(again, params={"force": "true"})).status_code == 202  # the third call
    limited = await service.client.post(again, params={"force": "true"})
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
