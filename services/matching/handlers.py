"""Thin adapters from Kafka events to matching use cases.

Target events (projects.v1, calls.v1) come through the ``matching`` consumer group; company events
are read by every replica through its own companies feed (``index_feed.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from services.matching import domain
from services.matching.domain import MatchingEngine
from shared.consumer import Handler
from shared.events.base import CloudEvent
from shared.events.calls import CallClosed, CallPublished, CallUpdated
from shared.events.projects import ProjectClosed, ProjectPosted, ProjectUpdated
from shared.outbox import UnitOfWork


def target_handlers(engine: MatchingEngine) -> Mapping[str, Handler]:
    async def project(uow: UnitOfWork, ce: CloudEvent, data: ProjectPosted | ProjectUpdated) -> None:
        if data.project.status != "open":
            await domain.close_target(uow, target_type="project", target_id=data.project.id)
            return
        await domain.upsert_target(uow, engine, target=domain.project_target(data.project))

    async def project_closed(uow: UnitOfWork, ce: CloudEvent, data: ProjectClosed) -> None:
        await domain.close_target(uow, target_type="project", target_id=data.project_id)

    async def call(uow: UnitOfWork, ce: CloudEvent, data: CallPublished | CallUpdated) -> None:
        if data.call.status == "closed":
            await domain.close_target(uow, target_type="call", target_id=data.call.id)
            return
        await domain.upsert_target(uow, engine, target=domain.call_target(data.call))

    async def call_closed(uow: UnitOfWork, ce: CloudEvent, data: CallClosed) -> None:
        await domain.close_target(uow, target_type="call", target_id=data.call_id)

    return {
        ProjectPosted.event_type: project,
        ProjectUpdated.event_type: project,
        ProjectClosed.event_type: project_closed,
        CallPublished.event_type: call,
        CallUpdated.event_type: call,
        CallClosed.event_type: call_closed,
    }
