"""The live alert stream (Server-Sent Events), resumable from ``Last-Event-ID``.

Every alert has a number from one global sequence (``alert_log.seq``) that is taken under a row lock
held until the alert's transaction commits, so alerts become visible in number order: a reader that
has seen number k will never later find a new alert numbered below k. A stream therefore only needs
its cursor (the last number sent) to resume without losing or repeating an alert.

New alerts are picked up when this process commits (the unit-of-work commit hook wakes the streams)
and, for alerts committed by another replica, by polling every ``ALERTS_STREAM_POLL_INTERVAL`` seconds.

A stream outlives the token check that opened it, so it asks again (:class:`shared.live.Recheck`):
every ``recheck_s`` seconds (the auth cache TTL) ``still_allowed`` decides whether it may go on; when
not, the stream sends a ``closed`` event with the reason and ends. Each account may hold
``ALERTS_STREAM_MAX_PER_ACCOUNT`` streams open in one process (:func:`shared.live.stream_slot`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.sse import ServerSentEvent
from sqlalchemy import func
from sqlmodel import col, select

from services.alerts.delivery_models import AlertLogEntry
from services.alerts.models import Alert, AlertPublic
from shared.live import Recheck, StillAllowed, StreamHub
from shared.outbox import UnitOfWorkFactory

BATCH = 100
RECONNECT_MS = 2000


class StreamedAlert(AlertPublic):
    seq: int


async def latest_seq(uow_factory: UnitOfWorkFactory, company_id: str) -> int:
    async with uow_factory() as uow:
        value = (
            await uow.session.exec(
                select(func.max(AlertLogEntry.seq)).where(col(AlertLogEntry.company_id) == company_id)
            )
        ).one()
    return int(value or 0)


async def alerts_after(
    uow_factory: UnitOfWorkFactory, company_id: str, after: int, limit: int = BATCH
) -> list[StreamedAlert]:
    async with uow_factory() as uow:
        rows = (
            await uow.session.exec(
                select(AlertLogEntry.seq, Alert)
                .join(Alert, col(Alert.id) == col(AlertLogEntry.alert_id))
                .where(col(AlertLogEntry.company_id) == company_id, col(AlertLogEntry.seq) > after)
                .order_by(col(AlertLogEntry.seq))
                .limit(limit)
            )
        ).all()
        # Read the rows while the session is open (closing it expires them).
        return [
            StreamedAlert.model_validate(
                {**AlertPublic.model_validate(alert, from_attributes=True).model_dump(), "seq": seq}
            )
            for seq, alert in rows
        ]


async def alert_events(
    uow_factory: UnitOfWorkFactory,
    hub: StreamHub,
    *,
    company_id: str,
    after: int | None,
    poll_interval_s: float,
    still_allowed: StillAllowed | None = None,
    recheck_s: float = 30.0,
) -> AsyncIterator[ServerSentEvent]:
    """``ready`` first, then every alert numbered above ``after`` (all new ones when ``after`` is None).

    Starting fresh, ``ready`` carries the current position as its ``id``, so a client that drops
    before the first alert still resumes from the right place. Every ``recheck_s`` seconds
    ``still_allowed`` is asked; a reason to stop ends the stream with a ``closed`` event.
    """
    recheck = Recheck(still_allowed, recheck_s)
    if after is None:
        cursor = await latest_seq(uow_factory, company_id)
        yield ServerSentEvent(event="ready", id=str(cursor), data={"after": cursor}, retry=RECONNECT_MS)
    else:
        cursor = after
        yield ServerSentEvent(event="ready", data={"after": cursor}, retry=RECONNECT_MS)
    while True:
        if (closing := await recheck.closing()) is not None:
            yield closing
            return
        seen = hub.version
        batch = await alerts_after(uow_factory, company_id, cursor)
        for alert in batch:
            yield ServerSentEvent(event="alert", id=str(alert.seq), raw_data=alert.model_dump_json())
            cursor = alert.seq
        if len(batch) < BATCH:
            await hub.wait(seen, recheck.wait_at_most(poll_interval_s))
