"""Where the platform's alerts end up during a fault run: a webhook receiver and an SMTP sink.

Both record every delivery they are handed (with the time it arrived) and never drop one, so the
checker can tell an undelivered alert from a duplicate delivery. The receiver deduplicates by the
delivery id the platform sends (``Bondgenoot-Delivery``), as the README asks integrators to do, and
fails the first attempt of one delivery in ``fail_one_in`` with a 503 so the retry topics carry
traffic too.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    """One delivery as it arrived: which delivery of which alert, on which channel, and when."""

    channel: str
    delivery_id: str
    alert_id: str
    attempt: int
    at: float
    company_id: str = ""
    target_id: str = ""


@dataclass
class Deliveries:
    """Everything received on one channel (thread-safe)."""

    channel: str
    items: list[Received] = field(default_factory=list)
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Received) -> None:
        with self._lock:
            self.items.append(item)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.items)


def _fails_first_attempt(delivery_id: str, one_in: int) -> bool:
    """Deterministic: the same delivery always fails (or not), whichever replica sends it."""
    if one_in <= 0:
        return False
    return int(hashlib.sha256(delivery_id.encode()).hexdigest()[:8], 16) % one_in == 0


class WebhookReceiver:
    """A stdlib HTTP server in a thread that accepts the platform's signed webhook POSTs."""

    def __init__(self, *, port: int, fail_one_in: int = 20) -> None:
        self.deliveries = Deliveries("webhook")
        self.fail_one_in = fail_one_in
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                delivery_id = self.headers.get("Bondgenoot-Delivery", "")
                attempt = int(self.headers.get("Bondgenoot-Attempt") or 1)
                if attempt == 1 and _fails_first_attempt(delivery_id, receiver.fail_one_in):
                    receiver.deliveries.rejected += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                data = json.loads(body).get("data", {})
                receiver.deliveries.add(
                    Received(
                        "webhook",
                        delivery_id,
                        str(data.get("alert_id", "")),
                        attempt,
                        time.time(),
                        company_id=str(data.get("company_id", "")),
                        target_id=str(data.get("target_id", "")),
                    )
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # thousands of lines otherwise; the checker reports what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: it would hang if never started
            self._server.shutdown()
        self._server.server_close()


# The link in the alerts service's confirmation e-mail (services/alerts/confirmation.py).
_CONFIRM_LINK = re.compile(r"/confirm-email/([A-Za-z0-9_.~-]+)")


class _MailHandler:
    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries
        self.confirmations: dict[str, str] = {}  # address → token of its latest confirmation e-mail

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        now = time.time()
        body = message.get_body(preferencelist=("plain",))
        link = _CONFIRM_LINK.search(body.get_content() if body is not None else "")
        if link is not None:
            for address in envelope.rcpt_tos:
                self.confirmations[str(address).lower()] = link.group(1)
            return "250 OK"
        # One message can carry several deliveries (a digest); immediate mail carries one.
        for delivery_id in str(message.get("Bondgenoot-Delivery", "")).split(","):
            if delivery_id.strip():
                self.deliveries.add(Received("email", delivery_id.strip(), "", 1, now))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on 127.0.0.1: accepts every message, records its ``Bondgenoot-Delivery`` ids."""

    def __init__(self, *, port: int) -> None:
        self.deliveries = Deliveries("email")
        self.port = port
        self._handler = _MailHandler(self.deliveries)
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=port)
        self._started = False

    def start(self) -> None:
        self._controller.start()
        self._started = True

    def confirmation_token(self, address: str) -> str | None:
        """The token of the latest confirmation e-mail sent to ``address``, if one arrived."""
        return self._handler.confirmations.get(address.lower())

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False
