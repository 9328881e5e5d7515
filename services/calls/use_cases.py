"""Call watcher use cases. They change the session and emit events; the unit of work commits.

* :func:`apply_poll` turns one :class:`PollResult` into stored calls and ``calls.v1`` events.
* :func:`poll_once` reads the portal and applies the result in one unit of work.
* :func:`record_suggestions` keeps the latest ``suggestions.v1`` result per call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import String, cast, func, or_
from sqlmodel import col, select

from services.calls.domain.diff import diff_calls, fingerprint, vanished_ids
from services.calls.domain.normalise import CallStatus, NormalisedCall, is_past_deadline
from services.calls.domain.portal import PollResult, PortalConfig, fetch_edf_topics
from services.calls.models import Call, CallSuggestions
from shared.events.base import CloudEvent
from shared.events.calls import CallClosed, CallData, CallPublished, CallUpdated
from shared.events.suggestions import SuggestionsComputed
from shared.outbox import UnitOfWork, UnitOfWorkFactory, as_utc, utcnow

log = logging.getLogger(__name__)

REASON_VANISHED = "no longer listed on the portal"
REASON_DEADLINES = "all deadlines passed"

WATCHER_LOCK_ID = 0x0B0D_CA11
"""PostgreSQL advisory lock serialising apply_poll across replicas of the watcher."""

Fetch = Callable[[PortalConfig], Awaitable[PollResult]]


class CallNotFound(LookupError):
    pass


class PollCounts(BaseModel):
    """What one poll did to the stored calls."""

    new: int = Field(0, description="Calls seen for the first time and published (call.published)")
    updated: int = Field(0, description="Stored calls whose data changed (call.updated)")
    unchanged: int = Field(0, description="Stored calls polled again with the same data")
    closed: int = Field(
        0,
        description=(
            "Calls that closed in this poll (call.closed): closed on the portal, every deadline passed, "
            "or no longer listed by a complete poll. Also counts a topic seen for the first time when it "
            "is already closed; that one is stored without any event."
        ),
    )
    complete: bool = Field(
        True,
        description=(
            "True when every page was read and every listed topic was parsed from at least one of its rows. "
            "Topics missing from a poll close only when every page was read and every row named its topic."
        ),
    )
    unparseable_rows: int = Field(
        0, description="Rows that name a topic but could not be parsed (each is described in problems)"
    )
    restarts: int = Field(0, description="How often the poll started again from page 1 because results shifted")
    problems: list[str] = Field(
        default_factory=list, description="Skipped pages and rows, and changes held back because of them"
    )


def _data(call: NormalisedCall) -> CallData:
    return CallData.model_validate(call.model_dump(mode="json"))


def utc_today() -> date:
    return datetime.now(UTC).date()


async def _serialise_watchers(uow: UnitOfWork) -> None:
    """On PostgreSQL, hold a transaction lock so two watchers never diff against the same state."""
    connection = await uow.session.connection()
    if connection.dialect.name == "postgresql":
        await uow.session.exec(select(func.pg_advisory_xact_lock(WATCHER_LOCK_ID)))


async def _stored_calls(uow: UnitOfWork, ids: list[str]) -> dict[str, Call]:
    """The stored calls a poll can affect: those polled now, and every one not closed yet."""
    query = select(Call).where(or_(col(Call.id).in_(ids), col(Call.status) != "closed"))
    return {row.id: row for row in (await uow.session.exec(query)).all()}


def _close(uow: UnitOfWork, row: Call, *, reason: str, now: datetime) -> None:
    """Close a stored call that the poll did not return (vanished, or its deadlines passed)."""
    closed = row.normalised().model_copy(update={"status": "closed"})
    row.store(closed, fingerprint=fingerprint(closed))
    row.closed_at = now
    row.updated_at = now
    uow.session.add(row)
    uow.emit(CallClosed(call_id=row.id, reason=reason), subject=row.id)


async def apply_poll(uow: UnitOfWork, *, result: PollResult, today: date) -> PollCounts:
    """Diff every polled topic against its stored version, store the new version and emit the change.

    * new topic: call.published (a topic already closed when first seen is stored silently);
    * changed topic: call.updated naming the changed fields (held back unless the listing is complete:
      a topic with a row on a missed page is known only partly, its merged version may lack fields);
    * closed on the portal, or every deadline passed: call.closed;
    * stored open topic that the portal no longer lists (every page read, every row naming its topic),
      or whose deadlines all passed: call.closed. A topic that is listed but none of whose rows could
      be parsed stays as stored: it did not vanish, and what it says now is unknown.

    Applying the same result twice emits nothing the second time.
    """
    await _serialise_watchers(uow)
    topics = {topic.id: topic for topic in result.topics}
    stored = await _stored_calls(uow, sorted(topics))
    counts = PollCounts(
        complete=result.complete,
        unparseable_rows=result.unparseable_rows,
        restarts=result.restarts,
        problems=list(result.problems),
    )
    partial = not result.listing_complete
    now = utcnow()

    for call_id in sorted(topics):
        row = stored.get(call_id)
        change = diff_calls(row.normalised() if row is not None else None, topics[call_id], today)
        call = change.call
        if row is None:
            row = Call.from_normalised(call, fingerprint=change.fingerprint)
            row.first_seen_at = row.updated_at = now
            if call.status == "closed":
                # Announcing a call nobody can apply to any more would only make noise downstream.
                row.closed_at = now
                counts.closed += 1
                log.info("call %s first seen already closed; stored without an event", call_id)
            else:
                uow.emit(CallPublished(call=_data(call)), subject=call_id)
                counts.new += 1
            uow.session.add(row)
            continue
        if change.kind == "unchanged":
            counts.unchanged += 1
            if row.fingerprint != change.fingerprint:  # e.g. fingerprint definition changed
                row.fingerprint = change.fingerprint
                uow.session.add(row)
            continue
        if change.kind == "updated" and partial:
            counts.unchanged += 1
            counts.problems.append(
                f"{call_id}: change of {', '.join(change.changed_fields)} held back until a complete poll"
            )
            continue
        row.store(call, fingerprint=change.fingerprint)
        row.updated_at = now
        if change.kind == "closed":
            row.closed_at = now
            uow.emit(CallClosed(call_id=call_id, reason=change.reason or "closed"), subject=call_id)
            counts.closed += 1
        else:  # updated
            if call.status != "closed":
                row.closed_at = None  # re-opened (a deadline was extended, or it was listed again)
            uow.emit(CallUpdated(call=_data(call), changed_fields=change.changed_fields), subject=call_id)
            counts.updated += 1
        uow.session.add(row)

    still_open = {call_id: row for call_id, row in stored.items() if call_id not in topics and row.status != "closed"}
    vanished = vanished_ids(still_open, result.listed, result.listing_complete)
    for call_id in sorted(still_open):
        row = still_open[call_id]
        if is_past_deadline(row.normalised(), today):
            reason = REASON_DEADLINES
        elif call_id in vanished:
            reason = REASON_VANISHED
        else:
            continue
        _close(uow, row, reason=reason, now=now)
        counts.closed += 1
    return counts


async def poll_once(
    uow_factory: UnitOfWorkFactory,
    config: PortalConfig,
    *,
    fetch: Fetch = fetch_edf_topics,
    today: date | None = None,
) -> PollCounts:
    """Read the portal, then apply the result in ONE unit of work and commit.

    The portal is read outside any transaction (retries can take minutes). When it stays unavailable,
    :class:`~services.calls.domain.portal.PortalUnavailable` propagates and nothing is stored.
    """
    result = await fetch(config)
    async with uow_factory() as uow:
        counts = await apply_poll(uow, result=result, today=today or utc_today())
        await uow.commit()
    log.info(
        "poll: %d new, %d updated, %d unchanged, %d closed, complete=%s, %d unparseable rows, %d restarts, %d problems",
        counts.new,
        counts.updated,
        counts.unchanged,
        counts.closed,
        counts.complete,
        counts.unparseable_rows,
        counts.restarts,
        len(counts.problems),
    )
    return counts


async def record_suggestions(uow: UnitOfWork, ce: CloudEvent, data: SuggestionsComputed) -> None:
    """Keep the newest suggestions per call; an older result arriving late (after a retry) is ignored."""
    if data.target_type != "call":
        return
    computed_at = as_utc(data.computed_at)
    row = await uow.session.get(CallSuggestions, data.target_id)
    if row is not None and as_utc(row.computed_at) >= computed_at:
        log.info(
            "ignoring suggestions for %s computed at %s: already have %s",
            data.target_id,
            computed_at.isoformat(),
            as_utc(row.computed_at).isoformat(),
        )
        return
    if row is None:
        row = CallSuggestions(
            call_id=data.target_id,
            payload={},
            algorithm_version=data.algorithm_version,
            computed_at=computed_at,
            event_id=ce.id,
        )
    row.payload = data.model_dump(mode="json")
    row.algorithm_version = data.algorithm_version
    row.computed_at = computed_at
    row.event_id = ce.id
    row.received_at = utcnow()
    uow.session.add(row)


async def get_call_or_raise(uow: UnitOfWork, *, call_id: str) -> Call:
    call = await uow.session.get(Call, call_id)
    if call is None:
        raise CallNotFound(call_id)
    return call


async def list_calls(
    uow: UnitOfWork,
    *,
    programme: str | None,
    status: CallStatus | None,
    limit: int,
    offset: int,
    domain: str | None = None,
) -> tuple[list[Call], int]:
    """Calls with the latest deadline first (calls without deadlines last), ties by id.

    ``domain`` must be a taxonomy slug (the API validates it): it is matched as a quoted JSON string
    in the stored list, which works the same on SQLite and PostgreSQL and needs no extra column.
    """
    query = select(Call)
    if programme:
        query = query.where(Call.programme == programme)
    if status:
        query = query.where(Call.status == status)
    if domain:
        query = query.where(cast(col(Call.domains), String).contains(f'"{domain}"'))
    total = (await uow.session.exec(select(func.count()).select_from(query.subquery()))).one()
    ordered = query.order_by(col(Call.latest_deadline).desc().nulls_last(), col(Call.id))
    rows = (await uow.session.exec(ordered.limit(limit).offset(offset))).all()
    return list(rows), total


async def get_suggestions(uow: UnitOfWork, *, call_id: str) -> CallSuggestions | None:
    """The latest suggestions for a known call (None when none arrived yet)."""
    await get_call_or_raise(uow, call_id=call_id)
    return await uow.session.get(CallSuggestions, call_id)
