"""E-mail: compose an alert (or a day's digest) as text + HTML, and send it over SMTP.

Every message carries a one-click unsubscribe link (RFC 8058): ``List-Unsubscribe`` with the HTTPS
URL of ``/unsubscribe/{token}`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; the same
link is in the body. ``Bondgenoot-Delivery`` names the delivery (or deliveries, for a digest) so a
duplicate sent after a crash can be recognised.

Headers carry text that others chose (a project's or call's title, display names). Each such value
is made one line — CR, LF, U+2028/2029, NEL and other control characters become spaces — and cut
to ``SUBJECT_MAX``/``NAME_MAX`` characters, so nobody can add a header or a recipient. A message that
still cannot be built (an address that cannot be written as ASCII, say) raises
:class:`MessageNotBuilt`: the delivery is marked ``failed`` with that reason, never left pending.
"""

from __future__ import annotations

import email.errors
import html
import ssl
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from urllib.parse import quote

import aiosmtplib

from services.alerts.delivery_models import Outcome
from services.alerts.models import AlertPublic
from services.alerts.settings import AlertsSettings
from services.alerts.signing import unsubscribe_token
from services.alerts.text import ADDRESS_MAX, AddressNotUsable, ascii_address, single_line
from shared.outbox import utcnow

SUBJECT_MAX = 200
NAME_MAX = 100


class MessageNotBuilt(ValueError):
    """The message cannot be composed or encoded; the reason says why. Sending it again will not help."""


def header_text(value: str, limit: int = SUBJECT_MAX) -> str:
    """A header value others chose, made safe: one line, no control characters, at most ``limit`` characters."""
    return single_line(value, limit)


def mailbox(value: str) -> str:
    """``Name <address>`` made one line first (so no line break can start a header), the name capped,
    the address checked."""
    name, address = parseaddr(header_text(value, NAME_MAX + ADDRESS_MAX + 3))
    return formataddr((header_text(name, NAME_MAX), ascii_address(address))) if name else ascii_address(address)


def build(compose: Callable[[], EmailMessage]) -> EmailMessage:
    """Compose a message and encode it once, so that anything that cannot be sent fails here, with a reason."""
    try:
        message = compose()
        message.as_bytes(policy=SMTP)
    except MessageNotBuilt:
        raise
    except AddressNotUsable as exc:
        raise MessageNotBuilt(str(exc)) from exc
    except (ValueError, TypeError, UnicodeError, LookupError, email.errors.MessageError) as exc:
        raise MessageNotBuilt(f"the e-mail cannot be built: {type(exc).__name__}: {exc}") from exc
    return message


def target_url(settings: AlertsSettings, alert: AlertPublic) -> str:
    """``PUBLIC_BASE_URL`` + the target's path (``/projects/{id}`` or ``/calls/{id}``)."""
    return f"{settings.public_url}/{alert.target_type}s/{quote(alert.target_id, safe='')}"


def unsubscribe_url(settings: AlertsSettings, company_id: str, address: str) -> str:
    token = unsubscribe_token(settings.unsubscribe_key, company_id, "email", address)
    return f"{settings.unsubscribe_url}/unsubscribe/{token}"


def reason_lines(alert: AlertPublic) -> list[str]:
    """Why the company matched, one readable line per reason."""
    r = alert.reasons
    lines: list[str] = []
    if r.summary:
        lines.append(r.summary)
    if r.matched_domains:
        lines.append("Matched domains: " + ", ".join(r.matched_domains))
    for m in r.capability_matches[:5]:
        lines.append(f"Your capability “{m.capability}” answers “{m.sought}” (similarity {m.similarity:.2f})")
    if r.top_terms:
        lines.append("Key terms: " + ", ".join(r.top_terms[:10]))
    if r.eligibility:
        lines.append("Eligibility: " + r.eligibility)
    return lines or ["Your profile matched this target."]


def _headline(alert: AlertPublic) -> str:
    kind = "Project" if alert.target_type == "project" else "Call"
    return f"{kind} in {alert.programme} · score {alert.score:.2f} · rank {alert.rank}"


def _text_block(settings: AlertsSettings, alert: AlertPublic) -> str:
    reasons = "\n".join(f"  - {line}" for line in reason_lines(alert))
    link = target_url(settings, alert)
    return f"{alert.target_title}\n{_headline(alert)}\n\nWhy you match:\n{reasons}\n\nView it: {link}\n"


def _html_block(settings: AlertsSettings, alert: AlertPublic) -> str:
    e = html.escape
    reasons = "".join(f"<li>{e(line)}</li>" for line in reason_lines(alert))
    link = e(target_url(settings, alert), quote=True)
    return (
        f'<h2 style="margin:0 0 4px"><a href="{link}">{e(alert.target_title)}</a></h2>'
        f'<p style="margin:0 0 8px;color:#555">{e(_headline(alert))}</p>'
        f"<p>Why you match:</p><ul>{reasons}</ul>"
        f'<p><a href="{link}">View it on Bondgenoot</a></p>'
    )


def _message(
    settings: AlertsSettings,
    *,
    to: str,
    company_id: str,
    subject: str,
    text: str,
    html_body: str,
    delivery_ids: Sequence[str],
) -> EmailMessage:
    unsub = unsubscribe_url(settings, company_id, to)
    msg = EmailMessage()
    msg["From"] = mailbox(settings.smtp_from)
    msg["To"] = ascii_address(to)
    msg["Subject"] = header_text(subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain="bondgenoot.eu")
    msg["List-Unsubscribe"] = f"<{unsub}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Bondgenoot-Delivery"] = ", ".join(delivery_ids)
    footer_text = (
        f"\n--\nYou receive this because your company subscribed to Bondgenoot alerts by e-mail.\n"
        f"Unsubscribe (one click, no login): {unsub}\n"
    )
    footer_html = (
        '<hr><p style="color:#777;font-size:12px">You receive this because your company subscribed to '
        f'Bondgenoot alerts by e-mail. <a href="{html.escape(unsub, quote=True)}">Unsubscribe</a> '
        "(one click, no login).</p>"
    )
    msg.set_content(text + footer_text)
    msg.add_alternative(f"<!doctype html><html><body>{html_body}{footer_html}</body></html>", subtype="html")
    return msg


def alert_email(settings: AlertsSettings, *, to: str, alert: AlertPublic, delivery_id: str) -> EmailMessage:
    """One alert; raises :class:`MessageNotBuilt` when it cannot be sent as it is."""
    return build(
        lambda: _message(
            settings,
            to=to,
            company_id=alert.company_id,
            subject=f"New match: {alert.target_title}",
            text=_text_block(settings, alert),
            html_body=_html_block(settings, alert),
            delivery_ids=[delivery_id],
        )
    )


def digest_email(
    settings: AlertsSettings, *, to: str, company_id: str, alerts: Sequence[AlertPublic], delivery_ids: Sequence[str]
) -> EmailMessage:
    n = len(alerts)
    heading = f"{n} new match{'es' if n != 1 else ''} for your company"
    text = f"{heading}\n\n" + "\n".join(f"{i}. {_text_block(settings, a)}" for i, a in enumerate(alerts, start=1))
    html_body = f"<h1>{html.escape(heading)}</h1>" + "<hr>".join(_html_block(settings, a) for a in alerts)
    return build(
        lambda: _message(
            settings,
            to=to,
            company_id=company_id,
            subject=f"Your Bondgenoot digest: {heading}",
            text=text,
            html_body=html_body,
            delivery_ids=delivery_ids,
        )
    )


class SmtpMailer:
    """Sends one message per call over SMTP (a connection each: alert mail is not bulk mail)."""

    def __init__(self, settings: AlertsSettings) -> None:
        self._s = settings

    async def send(self, message: EmailMessage) -> Outcome:
        s = self._s
        tls_context = ssl.create_default_context()
        if not s.smtp_validate_certs:
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        start = time.perf_counter()
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                use_tls=s.smtp_tls == "implicit",
                start_tls=True if s.smtp_tls == "starttls" else False,
                tls_context=tls_context,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return _failed(start, codes[0] if codes else None, f"recipients refused: {exc}", permanent=True)
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is a permanent refusal (bad mailbox, policy); 4xx is "try again later".
            return _failed(start, exc.code, f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _failed(start, None, f"{type(exc).__name__}: {exc}", permanent=False)
        except (ValueError, UnicodeError, email.errors.MessageError) as exc:  # built, yet not sendable
            return _failed(start, None, f"the e-mail cannot be sent: {type(exc).__name__}: {exc}", permanent=True)
        return Outcome(ok=True, status_code=250, latency_ms=_ms(start))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _failed(start: float, code: int | None, error: str, *, permanent: bool) -> Outcome:
    return Outcome(ok=False, retryable=not permanent, status_code=code, error=error, latency_ms=_ms(start))
