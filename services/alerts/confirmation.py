"""E-mail addresses receive alerts only after they confirmed, so nobody can subscribe someone else.

1. ``PUT .../channels/email`` with an address the company has not confirmed yet asks for a
   confirmation (:func:`request_confirmation`, in the channel's transaction): the row in
   ``email_confirmations`` becomes due. A new address replaces the row — a confirmation never
   carries over — and an address that was sent a link less than ``RESEND_AFTER`` ago is not sent
   another. Each account can cause ``ALERTS_CONFIRMATION_LIMIT`` confirmation e-mails an hour.
2. :class:`ConfirmationService` sends due confirmations: woken right after that commit, and every
   ``ALERTS_CONFIRMATION_POLL_INTERVAL`` seconds for whatever a crash or an SMTP outage left (with
   backoff; given up after ``MAX_ATTEMPTS``, the reason shown on the channel).
3. The e-mail holds a link to ``/confirm-email/{token}``, signed with ``ALERTS_TOKEN_SECRET``, bound to
   the company and the address, valid for ``ALERTS_CONFIRMATION_TTL``. Its GET shows a page with a
   button (mail scanners that open links confirm nothing); the POST confirms.
4. Until then alerts reach the in-app inbox and the other channels, not that address: the fan-out
   creates no e-mail delivery, and a delivery or digest finds out again when it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import and_
from sqlmodel import col, select

from services.alerts.delivery_models import EmailConfirmation, Outcome, SubscriptionChannel, same_address
from services.alerts.mail import MessageNotBuilt, SmtpMailer, build, header_text, mailbox
from services.alerts.settings import AlertsSettings
from services.alerts.signing import (
    ExpiredToken,
    InvalidToken,
    address_tag,
    confirmation_token,
    read_confirmation_token,
)
from services.alerts.text import ascii_address
from shared.db import Database
from shared.outbox import UnitOfWork, UnitOfWorkFactory, as_utc, utcnow
from shared.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)

RESEND_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 5
FIRST_BACKOFF = timedelta(seconds=30)
BATCH = 20


class ConfirmationLimited(RuntimeError):
    """The account caused its maximum of confirmation e-mails for now."""


async def is_confirmed(uow: UnitOfWork, company_id: str, address: str | None) -> bool:
    row = await uow.session.get(EmailConfirmation, company_id)
    return row is not None and row.confirms(address)


async def request_confirmation(uow: UnitOfWork, *, company_id: str, address: str, may_send: bool) -> bool:
    """Make sure ``address`` is confirmed or a confirmation is on its way; True when a new e-mail is due.

    Raises :class:`ConfirmationLimited` when one would be due but ``may_send`` is False.
    """
    row = await uow.session.get(EmailConfirmation, company_id)
    now = utcnow()
    if row is not None and same_address(row.address, address):
        if row.confirmed_at is not None or row.next_attempt_at is not None:
            return False  # confirmed, or an e-mail is on its way
        if row.sent_at is not None and now - as_utc(row.sent_at) < RESEND_AFTER:
            return False  # sent a moment ago: no second one yet
    if not may_send:
        raise ConfirmationLimited("too many confirmation e-mails from this account; try again later")
    if row is None:
        row = EmailConfirmation(company_id=company_id, address=address)
    row.address, row.requested_at, row.next_attempt_at = address, now, now
    row.sent_at, row.attempts, row.last_error, row.confirmed_at = None, 0, None, None
    uow.session.add(row)
    return True


async def request_missing(db: Database) -> int:
    """At start-up: active e-mail channels without a confirmation (made before confirmations existed) get one."""
    async with db.sessions() as session:
        missing = (
            await session.exec(
                select(SubscriptionChannel)
                .outerjoin(EmailConfirmation, col(EmailConfirmation.company_id) == col(SubscriptionChannel.company_id))
                .where(
                    col(SubscriptionChannel.channel) == "email",
                    col(SubscriptionChannel.active),
                    col(EmailConfirmation.company_id).is_(None),
                )
            )
        ).all()
        for channel in missing:
            session.add(EmailConfirmation(company_id=channel.company_id, address=channel.address or ""))
        await session.commit()
    if missing:
        log.info("%d e-mail channel(s) from before confirmations: confirmation requested", len(missing))
    return len(missing)


class ConfirmResult(enum.StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already confirmed"
    EXPIRED = "expired"
    OUTDATED = "for an address the channel no longer has"
    INVALID = "invalid"


def check_token(settings: AlertsSettings, token: str) -> ConfirmResult | None:
    """None for a good token, else why it cannot confirm anything (no database needed)."""
    try:
        read_confirmation_token(settings.unsubscribe_key, token, now=time.time())
    except ExpiredToken:
        return ConfirmResult.EXPIRED
    except InvalidToken:
        return ConfirmResult.INVALID
    return None


async def confirm(uow: UnitOfWork, *, settings: AlertsSettings, token: str) -> ConfirmResult:
    """Confirm the address a token names, if the company's e-mail channel still has that address."""
    try:
        company_id, tag = read_confirmation_token(settings.unsubscribe_key, token, now=time.time())
    except ExpiredToken:
        return ConfirmResult.EXPIRED
    except InvalidToken:
        return ConfirmResult.INVALID
    row = await uow.session.get(EmailConfirmation, company_id, with_for_update=True)
    channel = await uow.session.get(SubscriptionChannel, (company_id, "email"))
    if row is None or channel is None or address_tag(row.address) != tag or address_tag(channel.address or "") != tag:
        return ConfirmResult.OUTDATED
    if row.confirmed_at is not None:
        return ConfirmResult.ALREADY
    row.confirmed_at = utcnow()
    row.next_attempt_at = None
    uow.session.add(row)
    log.info("e-mail address of %s confirmed", company_id)
    return ConfirmResult.CONFIRMED


def confirmation_email(settings: AlertsSettings, *, to: str, company_id: str, now: datetime) -> EmailMessage:
    """The e-mail with the confirmation link; raises MessageNotBuilt."""
    expires = now + timedelta(seconds=settings.confirmation_ttl_s)
    token = confirmation_token(settings.unsubscribe_key, company_id, to, expires=int(expires.timestamp()))
    link = f"{settings.unsubscribe_url}/confirm-email/{token}"

    def compose() -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = mailbox(settings.smtp_from)
        msg["To"] = ascii_address(to)
        msg["Subject"] = header_text("Confirm Bondgenoot alerts to this address")
        msg.set_content(
            "Someone signed in to a company's Bondgenoot account asked to send its alerts to this address.\n\n"
            f"To receive them, confirm here (the link works until {expires:%Y-%m-%d %H:%M} UTC):\n{link}\n\n"
            "If that was not you, ignore this e-mail: nothing will be sent to you.\n"
        )
        return msg

    return build(compose)


class ConfirmationService:
    """Sends due confirmation e-mails (see the module docstring)."""

    def __init__(self, settings: AlertsSettings, uow: UnitOfWorkFactory, mailer: SmtpMailer) -> None:
        self.settings = settings
        self._uow = uow
        self.mailer = mailer
        self._wake = asyncio.Event()
        self.limiter = SlidingWindowLimiter(settings.confirmation_limit, window_s=3600.0)
        """Confirmation e-mails per account per hour: nobody mails strangers in bulk through us."""

    def wake(self) -> None:
        """A confirmation became due (after its commit): send it now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Background task: send due confirmations when woken and every poll interval."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.send_due()
            except Exception as exc:  # the database or SMTP blinked: the rows stay due, next round
                log.warning("confirmation round failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.confirmation_poll_interval_s):
                    await _first(stop.wait(), self._wake.wait())

    async def send_due(self, now: datetime | None = None) -> int:
        """Send every confirmation due by ``now``; the number sent."""
        sent = 0
        while True:
            async with self._uow() as uow:
                rows = list(
                    (
                        await uow.session.exec(
                            select(EmailConfirmation)
                            .where(
                                and_(
                                    col(EmailConfirmation.next_attempt_at).is_not(None),
                                    col(EmailConfirmation.next_attempt_at) <= (now or utcnow()),
                                )
                            )
                            .order_by(col(EmailConfirmation.next_attempt_at))
                            .limit(BATCH)
                            .with_for_update(skip_locked=True)
                        )
                    ).all()
                )
                for row in rows:
                    sent += await self._send(row)
                    uow.session.add(row)
                await uow.commit()
            if len(rows) < BATCH:
                return sent

    async def _send(self, row: EmailConfirmation) -> int:
        now = utcnow()
        try:
            message = confirmation_email(self.settings, to=row.address, company_id=row.company_id, now=now)
        except MessageNotBuilt as exc:
            outcome = Outcome(ok=False, error=str(exc))
        else:
            outcome = await self.mailer.send(message)
        row.attempts += 1
        if outcome.ok:
            row.sent_at, row.next_attempt_at, row.last_error = now, None, None
            return 1
        row.last_error = outcome.error
        if outcome.retryable and row.attempts < MAX_ATTEMPTS:
            row.next_attempt_at = now + FIRST_BACKOFF * 4 ** (row.attempts - 1)
        else:
            row.next_attempt_at = None
            log.warning("confirmation e-mail for %s given up: %s", row.company_id, outcome.error)
        return 0


async def _first(*waits: object) -> None:
    """Return when the first of these awaitables is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
