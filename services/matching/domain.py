"""Matching use cases: keep the read models, rank targets, emit suggestions and consortium proposals.

The ranking itself lives in ``services.matching.matcher`` (the same code the benchmark measures);
this module decides *when* to rank and what to publish. Handlers never commit: the shared consumer
commits the inbox row, the read-model change and the emitted events in one transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from services.matching.matcher import CompanyProfile, Matcher, Suggestion, Target, propose_consortia
from services.matching.models import CompanyView, SuggestionSet, TargetView
from shared.db import Database
from shared.events.calls import CallData
from shared.events.companies import CompanyProfileData
from shared.events.projects import ProjectData
from shared.events.suggestions import (
    ConsortiumProposal,
    ConsortiumProposed,
    SuggestionItem,
    SuggestionsComputed,
)
from shared.outbox import UnitOfWork, utcnow

log = logging.getLogger(__name__)


class MatchingEngine:
    """The in-memory index of every company profile, rebuilt from the read model at start-up."""

    def __init__(self, *, top_n: int) -> None:
        self.matcher = Matcher()
        self.top_n = top_n
        self.profiles: dict[str, CompanyProfile] = {}

    async def load(self, db: Database) -> int:
        async with db.sessions() as session:
            rows = (await session.exec(select(CompanyView))).all()
        for row in rows:
            self._index(CompanyProfile.model_validate(row.profile))
        return len(rows)

    def _index(self, profile: CompanyProfile) -> None:
        self.profiles[profile.id] = profile
        self.matcher.upsert(profile)

    def _drop(self, company_id: str) -> None:
        self.profiles.pop(company_id, None)
        self.matcher.remove(company_id)

    def rank(self, target: Target) -> list[Suggestion]:
        return self.matcher.rank(target, top_n=self.top_n)


def project_target(project: ProjectData) -> Target:
    return Target(
        target_type="project",
        id=project.id,
        title=project.title,
        programme=project.programme,
        summary=project.summary,
        sought_capabilities=project.sought_capabilities,
        domains=project.domains,
        institute=project.institute,
        partners_wanted=project.partners_wanted,
    )


def call_target(call: CallData) -> Target:
    return Target(
        target_type="call",
        id=call.id,
        title=call.title,
        programme=call.programme,
        description=call.description,
        sought_capabilities=[],
        domains=call.domains,
        edf_category=call.edf_category,
        action_type=call.action_type,
    )


def company_profile(data: CompanyProfileData) -> CompanyProfile:
    return CompanyProfile.model_validate(data.model_dump(mode="json"))


async def upsert_target(uow: UnitOfWork, engine: MatchingEngine, *, target: Target) -> None:
    """Store an open target and publish its ranking."""
    row = await uow.session.get(TargetView, (target.target_type, target.id))
    if row is None:
        row = TargetView(target_type=target.target_type, target_id=target.id, target={})
    row.target = target.model_dump(mode="json")
    row.open = True
    row.updated_at = utcnow()
    uow.session.add(row)
    await publish_ranking(uow, engine, target=target)


async def close_target(uow: UnitOfWork, *, target_type: str, target_id: str) -> None:
    row = await uow.session.get(TargetView, (target_type, target_id))
    if row is not None:
        row.open = False
        row.updated_at = utcnow()
        uow.session.add(row)


async def publish_ranking(
    uow: UnitOfWork, engine: MatchingEngine, *, target: Target, ranked: list[Suggestion] | None = None
) -> SuggestionSet:
    """Rank the target, keep the result, and emit suggestions.computed and consortium.proposed."""
    ranked = engine.rank(target) if ranked is None else ranked
    now = datetime.now(UTC)
    items = [SuggestionItem.model_validate(s.model_dump(mode="json")) for s in ranked]
    proposals = [
        ConsortiumProposal.model_validate(p.model_dump(mode="json"))
        for p in propose_consortia(target, ranked, engine.profiles)
    ]
    stored = await uow.session.get(SuggestionSet, (target.target_type, target.id))
    if stored is None:
        stored = SuggestionSet(
            target_type=target.target_type, target_id=target.id, algorithm_version="", suggestions=[]
        )
    stored.algorithm_version = engine.matcher.ALGORITHM_VERSION
    stored.suggestions = [i.model_dump(mode="json") for i in items]
    stored.consortia = [p.model_dump(mode="json") for p in proposals]
    stored.computed_at = now
    uow.session.add(stored)
    common: dict[str, Any] = {
        "target_type": target.target_type,
        "target_id": target.id,
        "target_title": target.title,
        "programme": target.programme,
        "algorithm_version": engine.matcher.ALGORITHM_VERSION,
        "computed_at": now,
    }
    uow.emit(SuggestionsComputed(**common, domains=target.domains, suggestions=items), subject=target.id)
    uow.emit(ConsortiumProposed(**common, proposals=proposals), subject=target.id)
    return stored


def _position(suggestions: list[dict[str, Any]], company_id: str) -> tuple[int, float] | None:
    for s in suggestions:
        if s["company_id"] == company_id:
            return int(s["rank"]), round(float(s["score"]), 4)
    return None


async def company_changed(uow: UnitOfWork, engine: MatchingEngine, *, profile: CompanyProfile) -> int:
    """Index a new or changed company; republish the targets where it enters, moves or leaves.

    Returns how many targets were republished.
    """
    row = await uow.session.get(CompanyView, profile.id) or CompanyView(id=profile.id, profile={})
    row.profile = profile.model_dump(mode="json")
    row.updated_at = utcnow()
    uow.session.add(row)
    engine._index(profile)
    return await _rescore_open_targets(uow, engine, company_id=profile.id)


async def company_removed(uow: UnitOfWork, engine: MatchingEngine, *, company_id: str) -> int:
    row = await uow.session.get(CompanyView, company_id)
    if row is not None:
        await uow.session.delete(row)
    engine._drop(company_id)
    return await _rescore_open_targets(uow, engine, company_id=company_id)


async def _rescore_open_targets(uow: UnitOfWork, engine: MatchingEngine, *, company_id: str) -> int:
    """Republish the open targets where this company enters, leaves or moves in the top N.

    ``would_change`` rescores only this company against each target (O(its profile)), so one
    company's update does not re-rank every open target; a full ranking runs only where it matters.
    """
    targets = (await uow.session.exec(select(TargetView).where(col(TargetView.open).is_(True)))).all()
    republished = 0
    for row in targets:
        target = Target.model_validate(row.target)
        stored = await uow.session.get(SuggestionSet, (row.target_type, row.target_id))
        current = [(s["company_id"], float(s["score"])) for s in stored.suggestions] if stored else []
        if stored is not None and not engine.matcher.would_change(target, company_id, current, engine.top_n):
            continue
        ranked = engine.rank(target)
        new_pos = next(((s.rank, round(s.score, 4)) for s in ranked if s.company_id == company_id), None)
        old_pos = _position(stored.suggestions, company_id) if stored else None
        if new_pos != old_pos:
            await publish_ranking(uow, engine, target=target, ranked=ranked)
            republished += 1
    return republished


async def get_suggestions(uow: UnitOfWork, *, target_type: str, target_id: str) -> SuggestionSet | None:
    return await uow.session.get(SuggestionSet, (target_type, target_id))
