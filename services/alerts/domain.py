"""Alert use cases: subscriptions, the inbox, and turning suggestions into alerts.

Domain functions change the session and emit events; the unit of work (or, for the consumer
handler, the shared consumer together with its inbox row) commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Insert, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import lazyload
from sqlmodel import col, select

from services.alerts import delivery
from services.alerts.models import Alert, Subscription, SubscriptionIn
from shared.events.alerts import AlertRaised
from shared.events.base import CloudEvent
from shared.events.suggestions import SuggestionItem, SuggestionsComputed
from shared.outbox import UnitOfWork, utcnow

log = logging.getLogger(__name__)

ALERT_KEY = ("company_id", "target_type", "target_id")


class SubscriptionNotFound(LookupError):
    pass


async def put_subscription(uow: UnitOfWork, *, company_id: str, data: SubscriptionIn) -> Subscription:
    """Create the company's subscription or replace it entirely."""
    values = data.model_dump()
    subscription = await uow.session.get(Subscription, company_id)
    if subscription is None:
        subscription = Subscription(company_id=company_id, **values)
    else:
        for key, value in values.items():
            setattr(subscription, key, value)
        subscription.updated_at = utcnow()
    uow.session.add(subscription)
    return subscription


async def get_subscription_or_raise(uow: UnitOfWork, *, company_id: str) -> Subscription:
    subscription = await uow.session.get(Subscription, company_id)
    if subscription is None:
        raise SubscriptionNotFound(company_id)
    return subscription


async def list_alerts(uow: UnitOfWork, *, company_id: str, limit: int, offset: int) -> tuple[list[Alert], int]:
    """The company's inbox, newest first."""
    query = select(Alert).where(Alert.company_id == company_id)
    total = (await uow.session.exec(select(func.count()).select_from(query.subquery()))).one()
    ordered = query.order_by(col(Alert.created_at).desc(), col(Alert.id)).limit(limit).offset(offset)
    rows = (await uow.session.exec(ordered)).all()
    return list(rows), total


class AlertNotFound(LookupError):
    pass


async def get_alert_or_raise(uow: UnitOfWork, *, company_id: str, alert_id: str) -> Alert:
    """One alert of this company's inbox (another company's alert is not found, as if it did not exist)."""
    alert = await uow.session.get(Alert, alert_id)
    if alert is None or alert.company_id != company_id:
        raise AlertNotFound(alert_id)
    return alert


# --- matching a suggestion against a subscription ---


def _overlaps(wanted: Iterable[str], offered: Iterable[str]) -> bool:
    return bool({w.lower() for w in wanted} & {o.lower() for o in offered})


def _searchable_text(data: SuggestionsComputed, item: SuggestionItem) -> str:
    """The target's title and terms plus the suggestion's reasons, lower-cased, for keyword search."""
    reasons = item.reasons
    parts = [
        data.target_title,
        *data.keywords,
        reasons.summary,
        *reasons.top_terms,
        *reasons.matched_domains,
        *(text for m in reasons.capability_matches for text in (m.sought, m.capability)),
    ]
    return "\n".join(parts).lower()


def accepts(subscription: Subscription, data: SuggestionsComputed, item: SuggestionItem) -> bool:
    """Whether this subscription wants an alert for this suggestion (empty filters accept all)."""
    if not subscription.active or item.score < subscription.min_score:
        return False
    if subscription.programmes and data.programme.upper() not in subscription.programmes:
        return False
    if subscription.domains:
        # A target without domains (e.g. a call not yet categorised) is judged by what matched.
        offered = data.domains or item.reasons.matched_domains
        if not _overlaps(subscription.domains, offered):
            return False
    if subscription.keywords:
        text = _searchable_text(data, item)
        if not any(keyword.lower() in text for keyword in subscription.keywords):
            return False
    return True


def _insert_new_only(uow: UnitOfWork, rows: list[dict[str, Any]]) -> Insert:
    """INSERT … ON CONFLICT (company, target) DO NOTHING RETURNING id: the constraint decides, not a check."""
    dialect = uow.session.get_bind().dialect.name
    table = Alert.__table__  # type: ignore[attr-defined]
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(rows).on_conflict_do_nothing(index_elements=list(ALERT_KEY))
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(rows).on_conflict_do_nothing(index_elements=list(ALERT_KEY))
    else:  # pragma: no cover - the platform runs on PostgreSQL or the embedded SQLite only
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    return stmt.returning(table.c.id)


async def on_suggestions_computed(uow: UnitOfWork, ce: CloudEvent, data: SuggestionsComputed) -> None:
    """Alert each suggested company whose subscription accepts the target, once per target.

    A recomputation for the same target (a different event) alerts nobody twice: the unique
    (company, target type, target id) constraint drops the repeat in the insert itself.
    """
    best: dict[str, SuggestionItem] = {}
    for item in sorted(data.suggestions, key=lambda s: s.rank):
        best.setdefault(item.company_id, item)
    if not best:
        return
    subscriptions = (
        await uow.session.exec(
            select(Subscription)
            .where(col(Subscription.company_id).in_(list(best)), col(Subscription.active))
            # Not needed here: no extra queries for the channels or the e-mail confirmation.
            .options(lazyload(Subscription.channels), lazyload(Subscription.confirmation))  # type: ignore[arg-type]
        )
    ).all()
    wanted = sorted(
        (best[s.company_id] for s in subscriptions if accepts(s, data, best[s.company_id])),
        key=lambda s: s.rank,
    )
    if not wanted:
        return
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "company_id": item.company_id,
            "target_type": data.target_type,
            "target_id": data.target_id,
            "target_title": data.target_title,
            "programme": data.programme,
            "score": item.score,
            "rank": item.rank,
            "reasons": item.reasons.model_dump(mode="json"),
            "source_event_id": ce.id,
            "created_at": now,
        }
        for item in wanted
    ]
    inserted = set((await uow.session.exec(_insert_new_only(uow, rows))).scalars().all())  # type: ignore[call-overload]
    raised: list[tuple[AlertRaised, CloudEvent]] = []
    for row, item in zip(rows, wanted, strict=True):
        if row["id"] not in inserted:
            continue
        alert = AlertRaised(
            alert_id=row["id"],
            company_id=item.company_id,
            target_type=data.target_type,
            target_id=data.target_id,
            target_title=data.target_title,
            programme=data.programme,
            score=item.score,
            rank=item.rank,
            reasons=item.reasons,
            raised_at=now,
        )
        raised.append((alert, uow.emit(alert, subject=item.company_id)))
    # Same transaction: the alert's sequence number (live stream) and its pending deliveries.
    await delivery.on_alerts_raised(uow, raised)
    skipped = len(rows) - len(inserted)
    log.info(
        "%s for %s %s: %d alert(s) raised, %d already alerted",
        ce.id,
        data.target_type,
        data.target_id,
        len(inserted),
        skipped,
    )
