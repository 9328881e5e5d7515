"""Delivery channels, deliveries and their attempts, and the alert sequence for the live stream.

Tables (all created beside the existing ``subscriptions`` and ``alerts``, none of which change):

- ``subscription_channels``: a company's e-mail and webhook channel, one row per (company, channel).
  The in-app inbox is always on and has no row.
- ``alert_sequence`` / ``alert_log``: a global, monotonically increasing number per alert (the SSE
  event id) and the alert's CloudEvent exactly as published (the webhook body).
- ``deliveries``: one row per (alert, channel), written in the alert's own transaction.
- ``delivery_attempts``: every attempt to send, with its outcome.
- ``email_confirmations``: whether the e-mail channel's address agreed to receive alerts
  (services/alerts/confirmation.py). A table of its own, not columns of ``subscription_channels``:
  tables are created, never altered, so existing databases gain it without a migration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, HttpUrl, field_validator
from pydantic import Field as PField
from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.alerts.text import ascii_address, single_line
from shared.outbox import utcnow
from shared.validation import Email

ChannelName = Literal["email", "webhook"]
EmailMode = Literal["immediate", "digest"]
DeliveryStatus = Literal["pending", "retrying", "delivered", "failed", "cancelled"]
CHANNELS: tuple[ChannelName, ...] = ("email", "webhook")


class SubscriptionChannel(SQLModel, table=True):
    """One delivery channel of a subscription. ``signing_secret`` is stored as issued (see README)."""

    __tablename__ = "subscription_channels"

    company_id: str = Field(primary_key=True, max_length=36, foreign_key="subscriptions.company_id")
    channel: str = Field(primary_key=True, max_length=20)
    address: str | None = Field(default=None, max_length=320)
    mode: str | None = Field(default=None, max_length=20)
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    signing_secret: str | None = Field(default=None, max_length=200)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    deactivated_at: datetime | None = None


class EmailConfirmation(SQLModel, table=True):
    """The confirmation of a company's e-mail address: requested, sent (or failing), confirmed.

    One row per company, for the address its e-mail channel has (or last had); a new address
    replaces the row, so a confirmation never carries over to another address.
    """

    __tablename__ = "email_confirmations"
    __table_args__ = (Index("ix_email_confirmations_due", "sent_at", "next_attempt_at"),)

    company_id: str = Field(primary_key=True, max_length=36)
    address: str = Field(max_length=320)
    requested_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime | None = Field(default_factory=utcnow)
    """When the confirmation e-mail is (next) due; None once sent or given up."""
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    confirmed_at: datetime | None = None

    def confirms(self, address: str | None) -> bool:
        """Whether ``address`` is the one confirmed (compared as the tokens compare it)."""
        return self.confirmed_at is not None and address is not None and same_address(self.address, address)


def same_address(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


class AlertSequence(SQLModel, table=True):
    """A counter row; incrementing it locks the row until commit, so numbers become visible in order."""

    __tablename__ = "alert_sequence"

    name: str = Field(primary_key=True, max_length=50)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class AlertLogEntry(SQLModel, table=True):
    """An alert's place in the sequence and its CloudEvent as published on ``alerts.v1``."""

    __tablename__ = "alert_log"
    __table_args__ = (Index("ix_alert_log_company_seq", "company_id", "seq"),)

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    alert_id: str = Field(unique=True, max_length=36)
    company_id: str = Field(max_length=36)
    event: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """An alert to send on one channel; ``job_id`` is the CloudEvent id of the one live job for it."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_deliveries_alert_channel"),
        Index("ix_deliveries_company_status", "company_id", "status", "created_at"),
        Index("ix_deliveries_digest", "channel", "mode", "status", "created_at"),
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    alert_id: str = Field(max_length=36)
    company_id: str = Field(max_length=36)
    channel: str = Field(max_length=20)
    mode: str = Field(default="immediate", max_length=20)
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    retry_level: int = 0
    job_id: str | None = Field(default=None, max_length=64)
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """One attempt to send a delivery (``status_code``: HTTP status or SMTP reply code)."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=36, index=True)
    alert_id: str = Field(max_length=36)
    channel: str = Field(max_length=20)
    attempt: int
    attempted_at: datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    latency_ms: float
    outcome: str = Field(max_length=20)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


EXCERPT_CHARS = 300
"""The most of a receiver's answer or an error message the attempt log keeps (one line)."""


@dataclass(frozen=True)
class Outcome:
    """What one send attempt did: delivered, or failed and whether trying again could help.

    ``error`` is what the attempt log and the delivery show: a single line of at most
    ``EXCERPT_CHARS`` characters, whatever the receiver or the exception said.
    """

    ok: bool
    retryable: bool = False
    status_code: int | None = None
    error: str | None = None
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.error is not None:
            object.__setattr__(self, "error", single_line(self.error, EXCERPT_CHARS))


# --- API models ---


class EmailChannelIn(BaseModel):
    address: Email = PField(
        description="Receives alerts once confirmed: a confirmation link is sent to it first (and again when it "
        "changes). The part before @ must be ASCII."
    )
    mode: EmailMode = PField(default="immediate", description="immediate: one e-mail per alert; digest: one a day")

    @field_validator("address")
    @classmethod
    def _sendable(cls, value: str) -> str:
        ascii_address(value)  # AddressNotUsable is a ValueError: a 422 naming the field
        return value


class WebhookChannelIn(BaseModel):
    url: HttpUrl = PField(description="http(s) URL that receives a signed POST per alert")


class InboxChannelPublic(BaseModel):
    active: bool = True


class EmailChannelPublic(BaseModel):
    address: str
    mode: EmailMode
    active: bool
    confirmed: bool = PField(description="Alerts are e-mailed only once the address confirmed (a link sent to it)")
    confirmation_sent_at: datetime | None = PField(description="When the confirmation e-mail went out")
    confirmation_error: str | None = PField(description="Why the confirmation e-mail could not be sent (yet)")
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None

    @classmethod
    def from_row(cls, row: SubscriptionChannel, confirmation: EmailConfirmation | None) -> EmailChannelPublic:
        ours = confirmation is not None and same_address(confirmation.address, row.address or "")
        current = confirmation if ours else None
        return cls.model_validate(
            {
                "address": row.address,
                "mode": row.mode,
                "active": row.active,
                "confirmed": current is not None and current.confirmed_at is not None,
                "confirmation_sent_at": current.sent_at if current else None,
                "confirmation_error": current.last_error if current else None,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "deactivated_at": row.deactivated_at,
            }
        )


class WebhookChannelPublic(BaseModel):
    url: str
    active: bool
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None


class WebhookChannelCreated(WebhookChannelPublic):
    secret: str = PField(description="The signing secret. Shown only in this response: store it now.")
    signature: str = PField(
        default="Bondgenoot-Signature: v1=hex(HMAC-SHA256(secret, f'{Bondgenoot-Timestamp}.{raw body}'))",
        description="How each POST is signed; services/alerts/README.md has the details",
    )


class ChannelsPublic(BaseModel):
    """The channels of a subscription (never the webhook secret)."""

    inbox: InboxChannelPublic = PField(default_factory=InboxChannelPublic)
    email: EmailChannelPublic | None = None
    webhook: WebhookChannelPublic | None = None

    @classmethod
    def from_rows(cls, rows: list[SubscriptionChannel], confirmation: EmailConfirmation | None) -> ChannelsPublic:
        out = cls()
        for row in rows:
            if row.channel == "email":
                out.email = EmailChannelPublic.from_row(row, confirmation)
            elif row.channel == "webhook":
                out.webhook = WebhookChannelPublic.model_validate(row, from_attributes=True)
        return out


class AttemptPublic(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    outcome: str
    error: str | None


class DeliveryPublic(BaseModel):
    id: str
    alert_id: str
    company_id: str
    channel: ChannelName
    mode: EmailMode
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryPublic):
    attempt_log: list[AttemptPublic]


class Redelivery(BaseModel):
    delivery: DeliveryPublic
    job_id: str


def channels_of(value: Any) -> ChannelsPublic:
    """``Subscription.channels`` (and its e-mail confirmation) as loaded, without triggering I/O
    (an unloaded list counts as empty)."""
    from sqlalchemy import inspect
    from sqlalchemy.orm.base import NO_VALUE

    try:
        state = inspect(value)
    except Exception:  # not an ORM object (a dict, a plain model): take what is there
        rows = getattr(value, "channels", None) or []
        if isinstance(rows, ChannelsPublic):
            return rows
        return ChannelsPublic.from_rows(list(rows), getattr(value, "confirmation", None))
    attrs = state.attrs if hasattr(state, "attrs") else {}
    channels = attrs.get("channels")
    if channels is None or channels.loaded_value is NO_VALUE:
        return ChannelsPublic()
    confirmation = attrs.get("confirmation")
    loaded = None if confirmation is None or confirmation.loaded_value is NO_VALUE else confirmation.loaded_value
    return ChannelsPublic.from_rows(list(channels.loaded_value), loaded)


DELIVERY_TABLES: list[type[SQLModel]] = [
    SubscriptionChannel,
    EmailConfirmation,
    AlertSequence,
    AlertLogEntry,
    Delivery,
    DeliveryAttempt,
]
