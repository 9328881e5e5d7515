"""Delivering alerts: channels, the per-(alert, channel) delivery rows, the workers and the retry ladder.

The flow (services/alerts/README.md has the picture):

1. The alerts consumer raises an alert. In the *same* transaction :func:`on_alerts_raised` gives it
   the next number in the alert sequence (the SSE id), writes one ``Delivery`` row per active channel
   and, for every delivery to send now, emits a *job* through the outbox onto
   ``alerts.deliveries.v1``. Alert, deliveries and jobs commit together or not at all.
2. A job is the alert's ``bondgenoot.alert.raised.v1`` event whose subject is the delivery id. The
   delivery consumer (shared ``EventProcessor``: explicit group, inbox row, manual commit) sends it,
   logs the attempt and updates the delivery in one transaction, then the offset is committed. A
   crash after sending and before that commit re-runs the job: at most one duplicate, never none.
3. A retryable failure (5xx, 408, 429, timeout, connection error; SMTP 4xx) emits the job to the
   next retry topic ``alerts.<channel>.retry.<n>`` in that same transaction; a retry consumer waits
   until the job's due time (its CloudEvent ``time`` + the level's delay, with jitter) and tries again.
   After the last level, or at once on a permanent failure, the job goes to ``alerts.<channel>.dlq``
   and the delivery is ``failed`` until ``POST /deliveries/{id}/redeliver``.
4. A delivery only acts on the job whose id it records (``job_id``): stale and duplicate jobs are no-ops.

E-mail in digest mode gets no job: :meth:`DeliveryService.send_due_digests` groups a day's pending
digest deliveries per company into one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Insert, and_, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from services.alerts import signing
from services.alerts.confirmation import is_confirmed, request_confirmation
from services.alerts.delivery_models import (
    CHANNELS,
    AlertLogEntry,
    AlertSequence,
    ChannelName,
    Delivery,
    DeliveryAttempt,
    EmailChannelIn,
    EmailConfirmation,
    Outcome,
    SubscriptionChannel,
    WebhookChannelIn,
)
from services.alerts.destination import DestinationPolicy
from services.alerts.mail import MessageNotBuilt, SmtpMailer, alert_email, digest_email
from services.alerts.models import Alert, AlertPublic, Subscription
from services.alerts.removal import is_removed
from services.alerts.settings import AlertsSettings
from services.alerts.signing import new_webhook_secret
from services.alerts.webhook import WebhookSender
from shared.events.alerts import AlertRaised
from shared.events.base import CloudEvent
from shared.outbox import UnitOfWork, UnitOfWorkFactory, as_utc, utcnow
from shared.ratelimit import SlidingWindowLimiter
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

DELIVERIES_TOPIC = "alerts.deliveries.v1"
DELIVERIES_GROUP = "alerts.deliveries"
SEQUENCE_NAME = "alerts"
DIGEST_BATCH = 100
NOT_SENDABLE = "channel removed, unsubscribed or its address not confirmed"


def retry_topic(channel: str, level: int) -> str:
    return f"alerts.{channel}.retry.{level}"


def dead_letter_topic(channel: str) -> str:
    return f"alerts.{channel}.dlq"


def delivery_topics(levels: int) -> tuple[str, ...]:
    """The private topics of delivery (each also gets a ``.dlq`` from ``ServiceRuntime(extra_topics=...)``)."""
    retries = [retry_topic(c, n) for n in range(1, levels + 1) for c in CHANNELS]
    return (DELIVERIES_TOPIC, *retries, *(dead_letter_topic(c) for c in CHANNELS))


class SubscriptionNotFound(LookupError):
    pass


class ChannelNotFound(LookupError):
    pass


class DeliveryNotFound(LookupError):
    pass


class DeliveryInProgress(RuntimeError):
    """A job for this delivery is still queued: redelivering now would send it twice."""


class AlreadyDelivered(RuntimeError):
    """The delivery was delivered: sending it again needs an explicit ``force``."""


# --- jobs: the alert's event, addressed to a delivery, on a delivery topic ---


@functools.cache
def _on_topic(topic: str) -> type[AlertRaised]:
    """``AlertRaised`` as published to another topic: same type and contract, different ``topic``."""
    name = "AlertRaisedOn_" + "".join(ch if ch.isalnum() else "_" for ch in topic)
    return cast(type[AlertRaised], type(name, (AlertRaised,), {"topic": topic, "__module__": __name__}))


def emit_job(uow: UnitOfWork, data: AlertRaised, *, topic: str, delivery_id: str) -> CloudEvent:
    """A delivery job (subject = delivery id) through the outbox, in the caller's transaction."""
    return uow.emit(_on_topic(topic).model_validate(data.model_dump()), subject=delivery_id)


def _alert_event_data(entry: AlertLogEntry) -> AlertRaised:
    return AlertRaised.model_validate(json.loads(entry.event)["data"])


# --- the alert sequence and fan-out (in the alert's own transaction) ---


def _insert_ignoring_conflicts(uow: UnitOfWork, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> Insert:
    dialect = uow.session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).values(rows).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(table).values(rows).on_conflict_do_nothing(index_elements=keys)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")  # pragma: no cover


async def next_sequence(uow: UnitOfWork, n: int) -> int:
    """Reserve ``n`` consecutive alert numbers; returns the first.

    The counter row stays locked until the transaction ends, so numbers are committed in the order
    they were taken: a reader that saw number k never later finds a new alert below k.
    """
    bump = (
        update(AlertSequence)
        .where(col(AlertSequence.name) == SEQUENCE_NAME)
        .values(value=AlertSequence.value + n)
        .returning(col(AlertSequence.value))
    )
    last = (await uow.session.exec(bump)).scalar_one_or_none()  # type: ignore[call-overload]
    if last is None:
        table = AlertSequence.__table__  # type: ignore[attr-defined]
        await uow.session.exec(_insert_ignoring_conflicts(uow, table, [{"name": SEQUENCE_NAME, "value": 0}], ["name"]))  # type: ignore[call-overload]
        last = (await uow.session.exec(bump)).scalar_one()  # type: ignore[call-overload]
    return int(last) - n + 1


async def on_alerts_raised(uow: UnitOfWork, raised: Sequence[tuple[AlertRaised, CloudEvent]]) -> None:
    """Number the new alerts and create their pending deliveries (with jobs) in the alert's transaction."""
    if not raised:
        return
    # Nothing here needs to see its own writes early: flush everything once, at commit.
    with uow.session.no_autoflush:
        await _number_and_fan_out(uow, raised)


async def _number_and_fan_out(uow: UnitOfWork, raised: Sequence[tuple[AlertRaised, CloudEvent]]) -> None:
    first = await next_sequence(uow, len(raised))
    for offset, (data, ce) in enumerate(raised):
        uow.session.add(
            AlertLogEntry(
                seq=first + offset,
                alert_id=data.alert_id,
                company_id=data.company_id,
                event=ce.model_dump_json(),
                created_at=data.raised_at,
            )
        )
    companies = sorted({data.company_id for data, _ in raised})
    channels: dict[str, list[SubscriptionChannel]] = defaultdict(list)
    for channel, confirmation in (
        await uow.session.exec(
            select(SubscriptionChannel, EmailConfirmation)
            .outerjoin(EmailConfirmation, col(EmailConfirmation.company_id) == col(SubscriptionChannel.company_id))
            .where(col(SubscriptionChannel.company_id).in_(companies), col(SubscriptionChannel.active))
        )
    ).all():
        # An e-mail address that has not confirmed gets nothing (the inbox has the alert).
        if channel.channel != "email" or (confirmation is not None and confirmation.confirms(channel.address)):
            channels[channel.company_id].append(channel)
    for data, _ in raised:
        for channel in sorted(channels[data.company_id], key=lambda c: c.channel):
            mode = channel.mode if channel.channel == "email" and channel.mode else "immediate"
            delivery = Delivery(alert_id=data.alert_id, company_id=data.company_id, channel=channel.channel, mode=mode)
            if mode == "immediate":
                delivery.job_id = emit_job(uow, data, topic=DELIVERIES_TOPIC, delivery_id=delivery.id).id
            uow.session.add(delivery)


# --- channels ---


async def _subscription(uow: UnitOfWork, company_id: str) -> Subscription:
    subscription = await uow.session.get(Subscription, company_id)
    if subscription is None:
        raise SubscriptionNotFound(company_id)
    return subscription


async def _upsert_channel(uow: UnitOfWork, company_id: str, channel: ChannelName, **values: Any) -> SubscriptionChannel:
    await _subscription(uow, company_id)
    row = await uow.session.get(SubscriptionChannel, (company_id, channel))
    now = utcnow()
    if row is None:
        row = SubscriptionChannel(company_id=company_id, channel=channel, created_at=now)
    for key, value in values.items():
        setattr(row, key, value)
    row.active, row.deactivated_at, row.updated_at = True, None, now
    uow.session.add(row)
    return row


async def put_email_channel(
    uow: UnitOfWork, *, company_id: str, data: EmailChannelIn, may_send_confirmation: bool
) -> tuple[SubscriptionChannel, bool]:
    """Set (or replace) the e-mail channel; this also re-activates an unsubscribed one.

    An address that has not confirmed is asked to (services/alerts/confirmation.py); the flag says
    whether a confirmation e-mail became due. Raises ConfirmationLimited when one would, but
    ``may_send_confirmation`` is False.
    """
    row = await _upsert_channel(uow, company_id, "email", address=str(data.address), mode=data.mode)
    requested = await request_confirmation(
        uow, company_id=company_id, address=str(data.address), may_send=may_send_confirmation
    )
    return row, requested


async def put_webhook_channel(
    uow: UnitOfWork, *, company_id: str, data: WebhookChannelIn, policy: DestinationPolicy
) -> tuple[SubscriptionChannel, str]:
    """Set (or replace) the webhook; every PUT issues a new secret, returned here and never again.

    Raises :class:`DestinationRefused` for a URL the destination policy refuses (where it points now;
    every delivery checks again at connection time).
    """
    await policy.check_destination(str(data.url))
    secret = new_webhook_secret()
    row = await _upsert_channel(uow, company_id, "webhook", url=str(data.url), signing_secret=secret)
    return row, secret


async def delete_channel(uow: UnitOfWork, *, company_id: str, channel: ChannelName) -> None:
    await _subscription(uow, company_id)
    row = await uow.session.get(SubscriptionChannel, (company_id, channel))
    if row is None:
        raise ChannelNotFound(f"{company_id}/{channel}")
    await uow.session.delete(row)
    if channel == "email":  # a later address starts unconfirmed
        confirmation = await uow.session.get(EmailConfirmation, company_id)
        if confirmation is not None:
            await uow.session.delete(confirmation)


class Unsubscribed(enum.StrEnum):
    NOW = "unsubscribed"
    ALREADY = "already unsubscribed"
    OTHER_ADDRESS = "the channel goes to another address now"
    NO_CHANNEL = "no such channel"


async def deactivate_channel(
    uow: UnitOfWork, *, company_id: str, channel: ChannelName, address_tag: str
) -> Unsubscribed:
    """The unsubscribe link: switch the channel off (idempotent) if it still goes where the link was sent.

    Switching e-mail off also withdraws the address's confirmation: only its owner can turn it on again.
    """
    row = await uow.session.get(SubscriptionChannel, (company_id, channel))
    if row is None:
        return Unsubscribed.NO_CHANNEL
    if signing.address_tag((row.address if channel == "email" else row.url) or "") != address_tag:
        return Unsubscribed.OTHER_ADDRESS
    if not row.active:
        return Unsubscribed.ALREADY
    now = utcnow()
    row.active, row.deactivated_at, row.updated_at = False, now, now
    uow.session.add(row)
    if channel == "email":
        confirmation = await uow.session.get(EmailConfirmation, company_id)
        if confirmation is not None:
            confirmation.confirmed_at, confirmation.next_attempt_at = None, None
            uow.session.add(confirmation)
    log.info("unsubscribed %s from %s", company_id, channel)
    return Unsubscribed.NOW


# --- listings ---


async def list_deliveries(
    uow: UnitOfWork, *, company_id: str, status: str | None, limit: int, offset: int
) -> tuple[list[Delivery], int]:
    query = select(Delivery).where(col(Delivery.company_id) == company_id)
    if status is not None:
        query = query.where(col(Delivery.status) == status)
    total = (await uow.session.exec(select(func.count()).select_from(query.subquery()))).one()
    ordered = query.order_by(col(Delivery.created_at).desc(), col(Delivery.id)).limit(limit).offset(offset)
    return list((await uow.session.exec(ordered)).all()), total


async def get_delivery(uow: UnitOfWork, *, delivery_id: str) -> tuple[Delivery, list[DeliveryAttempt]]:
    delivery = await uow.session.get(Delivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    attempts = (
        await uow.session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id) == delivery_id)
            .order_by(col(DeliveryAttempt.attempt))
        )
    ).all()
    return delivery, list(attempts)


# --- sending ---


def digest_cutoff(now: datetime, hour_utc: int) -> datetime:
    """The latest daily digest time (``hour_utc``:00 UTC) at or before ``now``."""
    boundary = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    return boundary if boundary <= now else boundary - timedelta(days=1)


class DeliveryService:
    """Sends deliveries: the job handler for the delivery and retry consumers, digests, redelivery."""

    def __init__(
        self,
        settings: AlertsSettings,
        uow: UnitOfWorkFactory,
        *,
        sender: WebhookSender | None = None,
        mailer: SmtpMailer | None = None,
    ) -> None:
        self.settings = settings
        self._uow = uow
        self.destinations = DestinationPolicy.from_settings(
            allow=settings.webhook_allow, local_mode=settings.local_mode
        )
        self.sender = sender or WebhookSender(timeout_s=settings.webhook_timeout_s, policy=self.destinations)
        self.redeliveries = SlidingWindowLimiter(settings.redeliver_limit)
        self.mailer = mailer or SmtpMailer(settings)
        self.levels = len(settings.retry_delays_s)

    # -- wiring --

    def register(self, runtime: ServiceRuntime) -> None:
        """Add the delivery consumer, one delayed consumer per retry level and the digest loop."""
        self._consumer(runtime, DELIVERIES_GROUP, [DELIVERIES_TOPIC], workers=self.settings.delivery_workers)
        for level in range(1, self.levels + 1):
            topics = [retry_topic(c, level) for c in CHANNELS]
            self._consumer(runtime, f"{DELIVERIES_GROUP}.retry.{level}", topics, level=level)
        runtime.background(self.run_digests)
        runtime.background(self._close_on_stop)

    def _consumer(
        self, runtime: ServiceRuntime, group: str, topics: list[str], *, level: int | None = None, workers: int = 1
    ) -> None:
        """A shared ``EventProcessor`` behind a subscriber that, on a retry level, waits until each job is due.

        ``workers`` > 1 runs that many consumers of the group in this process (partitions in
        parallel, each partition in order, offsets committed per record after its transaction).
        """

        longest_wait_s = (
            0.0 if level is None else self.settings.retry_delays_s[level - 1] * (1 + self.settings.retry_jitter)
        )

        async def due(body: bytes) -> bool:
            """On a retry level, wait until the job is due; False when shutting down meanwhile."""
            if runtime.stop_event.is_set():
                return False
            wait = 0.0 if level is None else self.retry_wait_s(body, level)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runtime.stop_event.wait(), wait)
            return not runtime.stop_event.is_set()

        runtime.consumer(
            group,
            topics=topics,
            handlers={AlertRaised.event_type: self.handle_job},
            workers=workers,
            gate=due,
            # A retry handler sleeps until its job is due; the group must not evict it meanwhile.
            max_poll_interval_ms=int((longest_wait_s + 300) * 1000),
        )

    async def _close_on_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.sender.aclose()

    # -- retry timing --

    def due_at(self, job: CloudEvent, level: int) -> datetime:
        """When a job on retry level ``level`` is due: its time + that level's delay ± jitter.

        The jitter is derived from the job id, so the producer (which shows it as
        ``next_attempt_at``) and the retry consumer (which waits for it) agree without talking.
        """
        delay = self.settings.retry_delays_s[level - 1]
        u = int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:8], "big") / 2**64
        factor = 1 + self.settings.retry_jitter * (2 * u - 1)
        return as_utc(job.time) + timedelta(seconds=delay * factor)

    def retry_wait_s(self, value: bytes | None, level: int) -> float:
        """Seconds until the job in this record value is due (0 for anything unreadable)."""
        try:
            job = CloudEvent.model_validate_json(value or b"")
        except ValueError:
            return 0.0  # the processor dead-letters it
        return max(0.0, (self.due_at(job, level) - utcnow()).total_seconds())

    # -- the job handler --

    async def handle_job(self, uow: UnitOfWork, ce: CloudEvent, data: AlertRaised) -> None:
        """Attempt the delivery ``ce.subject`` if this job is still its live one; record the outcome."""
        # One round trip: the delivery (locked against a concurrent job), its channel, its alert and event.
        found = (
            await uow.session.exec(
                select(Delivery, SubscriptionChannel, Alert, AlertLogEntry.event)
                .join(Alert, col(Alert.id) == col(Delivery.alert_id))
                .join(AlertLogEntry, col(AlertLogEntry.alert_id) == col(Delivery.alert_id))
                .outerjoin(
                    SubscriptionChannel,
                    and_(
                        col(SubscriptionChannel.company_id) == col(Delivery.company_id),
                        col(SubscriptionChannel.channel) == col(Delivery.channel),
                    ),
                )
                .where(col(Delivery.id) == ce.subject)
                .with_for_update(of=Delivery)  # type: ignore[arg-type]
            )
        ).first()
        if found is None and await is_removed(uow, data.company_id):
            log.info("job %s for delivery %s dropped: company %s was removed", ce.id, ce.subject, data.company_id)
            return
        if found is None or found[0].job_id != ce.id:
            log.info("job %s for delivery %s is stale; ignored", ce.id, ce.subject)
            return
        delivery, channel, alert, event = found
        now = utcnow()
        if channel is None or not channel.active:
            delivery.status, delivery.job_id, delivery.next_attempt_at = "cancelled", None, None
            delivery.last_error, delivery.updated_at = "channel removed or unsubscribed before sending", now
            uow.session.add(delivery)
            return
        if channel.channel == "email" and not await is_confirmed(uow, channel.company_id, channel.address):
            delivery.status, delivery.job_id, delivery.next_attempt_at = "cancelled", None, None
            delivery.last_error, delivery.updated_at = "the e-mail address is not confirmed", now
            uow.session.add(delivery)
            return
        attempt = delivery.attempts + 1
        outcome = await self._send(delivery, channel, alert, event, attempt)
        retry = not outcome.ok and outcome.retryable and delivery.retry_level < self.levels
        self._record(uow, delivery, attempt, outcome, "delivered" if outcome.ok else "retry" if retry else "failed")
        if outcome.ok:
            delivery.status, delivery.delivered_at = "delivered", utcnow()
            delivery.job_id, delivery.next_attempt_at = None, None
        elif retry:
            level = delivery.retry_level + 1
            job = emit_job(uow, data, topic=retry_topic(delivery.channel, level), delivery_id=delivery.id)
            delivery.status, delivery.retry_level, delivery.job_id = "retrying", level, job.id
            delivery.next_attempt_at = self.due_at(job, level)
        else:
            emit_job(uow, data, topic=dead_letter_topic(delivery.channel), delivery_id=delivery.id)
            delivery.status, delivery.job_id, delivery.next_attempt_at = "failed", None, None
            log.warning(
                "delivery %s (%s) dead-lettered after attempt %d: %s",
                delivery.id,
                delivery.channel,
                attempt,
                outcome.error,
            )
        uow.session.add(delivery)

    async def _send(
        self, delivery: Delivery, channel: SubscriptionChannel, alert: Alert, event: str, attempt: int
    ) -> Outcome:
        if delivery.channel == "webhook":
            return await self.sender.post(
                channel.url or "",
                secret=channel.signing_secret or "",
                body=event.encode(),
                event_id=json.loads(event)["id"],
                delivery_id=delivery.id,
                attempt=attempt,
            )
        public = AlertPublic.model_validate(alert, from_attributes=True)
        try:
            message = alert_email(self.settings, to=channel.address or "", alert=public, delivery_id=delivery.id)
        except MessageNotBuilt as exc:  # permanent: failed with the reason, redeliverable once fixed
            return Outcome(ok=False, error=str(exc))
        return await self.mailer.send(message)

    @staticmethod
    def _record(uow: UnitOfWork, delivery: Delivery, attempt: int, outcome: Outcome, result: str) -> None:
        """Log the attempt and keep its outcome on the delivery (same transaction as the next step)."""
        uow.session.add(
            DeliveryAttempt(
                delivery_id=delivery.id,
                alert_id=delivery.alert_id,
                channel=delivery.channel,
                attempt=attempt,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                outcome=result,
                error=outcome.error,
            )
        )
        delivery.attempts = attempt
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        delivery.updated_at = utcnow()

    # -- redelivery --

    async def redeliver(self, delivery_id: str, *, force: bool = False) -> tuple[Delivery, str]:
        """Queue a fresh job for a delivery that is not already queued; returns it and the job id.

        A delivered delivery is sent again only with ``force`` (the receiver asked for it again).
        """
        async with self._uow() as uow:
            delivery = (
                await uow.session.exec(select(Delivery).where(col(Delivery.id) == delivery_id).with_for_update())
            ).first()
            if delivery is None:
                raise DeliveryNotFound(delivery_id)
            if delivery.status in ("pending", "retrying"):
                raise DeliveryInProgress(f"delivery {delivery_id} is {delivery.status}")
            if delivery.status == "delivered" and not force:
                raise AlreadyDelivered(f"delivery {delivery_id} was delivered; add force=true to send it again")
            entry = (
                await uow.session.exec(select(AlertLogEntry).where(col(AlertLogEntry.alert_id) == delivery.alert_id))
            ).one()
            job = emit_job(uow, _alert_event_data(entry), topic=DELIVERIES_TOPIC, delivery_id=delivery.id)
            delivery.status, delivery.retry_level, delivery.job_id = "pending", 0, job.id
            delivery.next_attempt_at, delivery.updated_at = None, utcnow()
            uow.session.add(delivery)
            await uow.commit()
            return delivery, job.id

    # -- digests --

    async def run_digests(self, stop: asyncio.Event) -> None:
        """Background task: send due digests every ``ALERTS_DIGEST_POLL_INTERVAL`` seconds."""
        while not stop.is_set():
            try:
                await self.send_due_digests()
            except Exception as exc:  # the database blinked: try again next round
                log.warning("digest round failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.digest_poll_interval_s)

    async def send_due_digests(self, now: datetime | None = None) -> int:
        """Send one digest per company with digest deliveries from before the last digest time; count sent."""
        cutoff = digest_cutoff(now or utcnow(), self.settings.digest_hour_utc)
        async with self._uow() as uow:
            companies = (
                await uow.session.exec(
                    select(Delivery.company_id).where(*self._due_digest(cutoff)).distinct()  # type: ignore[call-overload]
                )
            ).all()
        sent = 0
        for company_id in companies:
            while (result := await self._send_digest(company_id, cutoff)) is not None:
                sent += result
                if not result:
                    break
        return sent

    @staticmethod
    def _due_digest(cutoff: datetime) -> list[Any]:
        return [
            col(Delivery.channel) == "email",
            col(Delivery.mode) == "digest",
            col(Delivery.status) == "pending",
            col(Delivery.job_id).is_(None),
            col(Delivery.created_at) < cutoff,
        ]

    async def _send_digest(self, company_id: str, cutoff: datetime) -> int | None:
        """One digest e-mail for up to DIGEST_BATCH deliveries: 1 sent, 0 failed, None when nothing is due."""
        async with self._uow() as uow:
            rows = list(
                (
                    await uow.session.exec(
                        select(Delivery)
                        .where(col(Delivery.company_id) == company_id, *self._due_digest(cutoff))
                        .order_by(col(Delivery.created_at), col(Delivery.id))
                        .limit(DIGEST_BATCH)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not rows:
                return None
            channel = await uow.session.get(SubscriptionChannel, (company_id, "email"))
            if channel is None or not channel.active or not await is_confirmed(uow, company_id, channel.address):
                for d in rows:
                    d.status, d.last_error, d.updated_at = (
                        "cancelled",
                        "channel removed, unsubscribed or unconfirmed",
                        utcnow(),
                    )
                    uow.session.add(d)
                await uow.commit()
                return 0
            alerts = {
                a.id: AlertPublic.model_validate(a, from_attributes=True)
                for a in (
                    await uow.session.exec(select(Alert).where(col(Alert.id).in_([d.alert_id for d in rows])))
                ).all()
            }
            ordered = [alerts[d.alert_id] for d in rows if d.alert_id in alerts]
            try:
                message = digest_email(
                    self.settings,
                    to=channel.address or "",
                    company_id=company_id,
                    alerts=ordered,
                    delivery_ids=[d.id for d in rows],
                )
            except MessageNotBuilt as exc:  # permanent: every row of it fails with the reason
                outcome = Outcome(ok=False, error=str(exc))
            else:
                outcome = await self.mailer.send(message)
            for d in rows:
                # A failed digest stays pending for the next round, up to as many tries as the retry ladder.
                attempt = d.attempts + 1
                give_up = not outcome.ok and (not outcome.retryable or attempt > self.levels)
                self._record(uow, d, attempt, outcome, "delivered" if outcome.ok else "failed" if give_up else "retry")
                if outcome.ok:
                    d.status, d.delivered_at = "delivered", utcnow()
                elif give_up:
                    d.status = "failed"
                    emit_job(uow, await self._event_data(uow, d), topic=dead_letter_topic("email"), delivery_id=d.id)
                uow.session.add(d)
            await uow.commit()
            if not outcome.ok:
                log.warning("digest for %s failed: %s", company_id, outcome.error)
            return 1 if outcome.ok else 0

    @staticmethod
    async def _event_data(uow: UnitOfWork, delivery: Delivery) -> AlertRaised:
        entry = (
            await uow.session.exec(select(AlertLogEntry).where(col(AlertLogEntry.alert_id) == delivery.alert_id))
        ).one()
        return _alert_event_data(entry)


# --- "send test" from the portal: one signed POST to the webhook, not recorded as a delivery ---

TEST_EVENT_TYPE = "bondgenoot.webhook.test.v1"


async def send_test_webhook(uow: UnitOfWork, sender: WebhookSender, *, company_id: str) -> Outcome:
    """POST a signed test CloudEvent to the company's webhook now, exactly as alerts are signed.

    Raises :class:`SubscriptionNotFound` / :class:`ChannelNotFound` when there is no webhook to test.
    """
    subscription = await uow.session.get(Subscription, company_id)
    if subscription is None:
        raise SubscriptionNotFound(company_id)
    row = await uow.session.get(SubscriptionChannel, (company_id, "webhook"))
    if row is None or not row.url or not row.signing_secret:
        raise ChannelNotFound("webhook")
    event = CloudEvent(
        source="/services/alerts",
        type=TEST_EVENT_TYPE,
        subject=company_id,
        data={"message": "A test from Bondgenoot: your webhook receives and can verify alerts."},
    )
    body = event.model_dump_json().encode()
    return await sender.post(
        row.url, secret=row.signing_secret, body=body, event_id=event.id, delivery_id="test", attempt=1
    )
