"""The fault suite's SMTP sink finds the link of the alerts service's real confirmation e-mail."""

from __future__ import annotations

import smtplib
import time

from services.alerts.confirmation import confirmation_email
from services.alerts.settings import AlertsSettings
from services.alerts.signing import read_confirmation_token
from shared.outbox import utcnow
from tests.chaos.sinks import SmtpSink
from tests.infra import free_port


def test_the_sink_keeps_the_token_of_a_confirmation_email_and_counts_it_as_no_delivery() -> None:
    settings = AlertsSettings()
    address = "c1@chaos.example"
    sink = SmtpSink(port=free_port())
    sink.start()
    try:
        message = confirmation_email(settings, to=address, company_id="company-1", now=utcnow())
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.send_message(message)
        token = sink.confirmation_token("C1@chaos.example")
    finally:
        sink.stop()
    assert token is not None
    assert read_confirmation_token(settings.unsubscribe_key, token, now=time.time())[0] == "company-1"
    assert sink.deliveries.snapshot() == []  # a confirmation is no alert delivery
