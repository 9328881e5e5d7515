"""Composing alert e-mails: text + HTML, reasons, links, one-click unsubscribe headers."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import pytest

from services.alerts.mail import SUBJECT_MAX, MessageNotBuilt, alert_email, digest_email, reason_lines, target_url
from services.alerts.models import AlertPublic
from services.alerts.settings import AlertsSettings
from services.alerts.signing import address_tag, read_unsubscribe_token
from shared.events.suggestions import CapabilityMatch, MatchReasons

COMPANY = "0b5cd5c4-54cf-4a49-8a8a-3f0f6a1b2c3d"
SETTINGS = AlertsSettings(  # type: ignore[call-arg]
    PUBLIC_BASE_URL="https://bondgenoot.example/",
    ALERTS_TOKEN_SECRET="unit-test-secret-0123456789",
    ALERTS_SMTP_FROM="Bondgenoot <alerts@bondgenoot.example>",
)


def alert(title: str = "Counter-drone <acoustic> sensing", target_id: str = "EDF-2025/RA 1") -> AlertPublic:
    return AlertPublic(
        id="a1",
        company_id=COMPANY,
        target_type="call",
        target_id=target_id,
        target_title=title,
        programme="EDF",
        score=0.83,
        rank=2,
        reasons=MatchReasons(
            summary="Acoustic arrays & drone detection",
            matched_domains=["aviation-counter-uas"],
            capability_matches=[CapabilityMatch(sought="arrays", capability="MEMS arrays", similarity=0.7)],
            top_terms=["acoustic"],
            eligibility="Belgian SME",
        ),
        created_at=datetime.now(UTC),
    )


def test_the_target_link_is_the_public_base_url_plus_the_target_path() -> None:
    assert target_url(SETTINGS, alert()) == "https://bondgenoot.example/calls/EDF-2025%2FRA%201"


def test_an_alert_email_has_text_and_html_with_reasons_link_and_unsubscribe() -> None:
    msg = alert_email(SETTINGS, to="bids@example.com", alert=alert(), delivery_id="d-1")
    assert msg["To"] == "bids@example.com" and msg["From"] == "Bondgenoot <alerts@bondgenoot.example>"
    assert msg["Subject"] == "New match: Counter-drone <acoustic> sensing"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    for line in reason_lines(alert()):
        assert line in text
    assert "Eligibility: Belgian SME" in text and "Matched domains: aviation-counter-uas" in text
    assert "Counter-drone &lt;acoustic&gt; sensing" in html and "<acoustic>" not in html  # escaped
    assert "Acoustic arrays &amp; drone detection" in html
    assert "https://bondgenoot.example/calls/EDF-2025%2FRA%201" in text

    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(r"<https://bondgenoot\.example/unsubscribe/([^>]+)>", str(msg["List-Unsubscribe"]))
    assert match
    token = match.group(1)
    assert read_unsubscribe_token(SETTINGS.unsubscribe_key, token) == (
        COMPANY,
        "email",
        address_tag("bids@example.com"),
    )
    assert match.group(0)[1:-1] in text and match.group(0)[1:-1] in html
    assert msg["Bondgenoot-Delivery"] == "d-1" and msg["Message-ID"]


def test_a_digest_lists_every_alert_once() -> None:
    alerts = [alert(title=f"Target {n}", target_id=f"T{n}") for n in range(3)]
    msg = digest_email(SETTINGS, to="x@example.com", company_id=COMPANY, alerts=alerts, delivery_ids=["d1", "d2", "d3"])
    assert msg["Subject"] == "Your Bondgenoot digest: 3 new matches for your company"
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert [text.count(f"Target {n}") for n in range(3)] == [1, 1, 1]
    assert msg["Bondgenoot-Delivery"] == "d1, d2, d3"


def test_reasons_fall_back_to_a_sentence_when_there_are_none() -> None:
    bare = alert().model_copy(update={"reasons": MatchReasons()})
    assert reason_lines(bare) == ["Your profile matched this target."]


@pytest.mark.parametrize(
    "title",
    [
        "Drones\r\nBcc: everyone@victim.example",
        "Drones\nX-Injected: yes",
        "Drones\u2028Bcc: everyone@victim.example",
        "Drones\u2029second paragraph",
        "Drones\x85next line",
        "Drones\x00\x1b[2J\x7f",
        "Drones \u202eevil\u202c",
        "A" * 10_000,
    ],
)
def test_text_from_others_reaches_a_header_on_one_line_and_capped(title: str) -> None:
    msg = alert_email(SETTINGS, to="bids@example.com", alert=alert(title=title), delivery_id="d-1")
    subject = str(msg["Subject"])
    assert subject.isprintable() and len(subject) <= SUBJECT_MAX
    raw = msg.as_bytes()
    head = raw.split(b"\n\n", 1)[0].split(b"\n")
    assert not [line for line in head if line.startswith((b"Bcc:", b"X-Injected:"))]
    assert all(b"\x00" not in line for line in head)
    headers = email.message_from_bytes(raw, policy=email.policy.default)
    assert list(headers.keys()).count("Subject") == 1 and headers["Bcc"] is None
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert title.split("\r")[0].split("\n")[0][:50] in text  # the body keeps the text as it was


def test_display_names_in_from_are_made_safe_too() -> None:
    settings = SETTINGS.model_copy(update={"smtp_from": '"Bondgenoot\r\nBcc: x@y.example" <alerts@bondgenoot.example>'})
    msg = alert_email(settings, to="bids@example.com", alert=alert(), delivery_id="d-1")
    assert "\n" not in str(msg["From"]) and msg["Bcc"] is None
    assert msg["From"].addresses[0].addr_spec == "alerts@bondgenoot.example"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("bïds@example.com", "non-ASCII local part"),
        ("bids@example.com\nBcc: x@y.example", "white space or control characters"),
        ("no-at-sign", "not an e-mail address"),
    ],
)
def test_a_message_that_cannot_be_built_says_why(address: str, reason: str) -> None:
    with pytest.raises(MessageNotBuilt, match=reason):
        alert_email(SETTINGS, to=address, alert=alert(), delivery_id="d-1")


def test_international_domains_are_encoded() -> None:
    msg = alert_email(SETTINGS, to="bids@exämple.com", alert=alert(), delivery_id="d-1")
    assert msg["To"] == "bids@xn--exmple-cua.com"
