"""A company removed from the registry leaves nothing behind in the alerts service.

The registry publishes ``bondgenoot.company.removed.v1`` on ``companies.v1`` in the transaction that
deletes the company (and revokes its tokens). The alerts service consumes it (group
``alerts.companies``) and, in one transaction with its inbox row, deletes everything it holds for
the company: subscription, channels (addresses, webhook URLs and signing secrets), e-mail
confirmations, deliveries and their attempts, the inbox and the alert log. It keeps a tombstone
(``removed_companies``) so that a delivery job still on a delivery or retry topic, or an alert that
raced the removal, is dropped with a log line instead of sent, and an open live stream of the
company is closed at its next check. Applying the event twice changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Field, SQLModel, col, select

from services.alerts.delivery_models import (
    AlertLogEntry,
    Delivery,
    DeliveryAttempt,
    EmailConfirmation,
    SubscriptionChannel,
)
from services.alerts.models import Alert, Subscription
from shared.events.base import CloudEvent
from shared.events.companies import CompanyRemoved
from shared.outbox import UnitOfWork, utcnow

log = logging.getLogger(__name__)

COMPANIES_GROUP = "alerts.companies"


class RemovedCompany(SQLModel, table=True):
    """A company the registry removed: nothing may be sent to it or stored for it any more."""

    __tablename__ = "removed_companies"

    company_id: str = Field(primary_key=True, max_length=36)
    removed_at: datetime = Field(default_factory=utcnow)
    event_id: str = Field(max_length=64)


async def is_removed(uow: UnitOfWork, company_id: str) -> bool:
    return await uow.session.get(RemovedCompany, company_id) is not None


async def on_company_removed(uow: UnitOfWork, ce: CloudEvent, data: CompanyRemoved) -> None:
    """Delete all the company's alert data and leave a tombstone (idempotent)."""
    company_id = data.company_id.lower()
    deliveries = select(Delivery.id).where(col(Delivery.company_id) == company_id)
    queued = len(
        (
            await uow.session.exec(
                select(Delivery.id).where(
                    col(Delivery.company_id) == company_id, col(Delivery.status).in_(("pending", "retrying"))
                )
            )
        ).all()
    )
    counts: dict[str, int] = {}
    for name, statement in (
        ("delivery attempts", delete(DeliveryAttempt).where(col(DeliveryAttempt.delivery_id).in_(deliveries))),
        ("deliveries", delete(Delivery).where(col(Delivery.company_id) == company_id)),
        ("channels", delete(SubscriptionChannel).where(col(SubscriptionChannel.company_id) == company_id)),
        ("e-mail confirmations", delete(EmailConfirmation).where(col(EmailConfirmation.company_id) == company_id)),
        ("subscriptions", delete(Subscription).where(col(Subscription.company_id) == company_id)),
        ("alert log entries", delete(AlertLogEntry).where(col(AlertLogEntry.company_id) == company_id)),
        ("alerts", delete(Alert).where(col(Alert.company_id) == company_id)),
    ):
        counts[name] = (await uow.session.exec(statement)).rowcount  # type: ignore[call-overload]
    if not await is_removed(uow, company_id):
        uow.session.add(RemovedCompany(company_id=company_id, event_id=ce.id))
    log.info(
        "company %s removed (%s): deleted %s; %d queued deliveries will not be sent",
        company_id,
        ce.id,
        ", ".join(f"{n} {name}" for name, n in counts.items()),
        queued,
    )
