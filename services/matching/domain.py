"""Matching use cases: keep the read models, rank targets, emit suggestions and consortium proposals.

The ranking itself lives in ``services.matching.matcher`` (the same code the benchmark measures);
this module decides *when* to rank and what to publish. Handlers never commit: the shared consumer
commits the inbox row, the read-model change and the emitted events in one transaction, and only
then does the in-memory index follow (:class:`MatchingEngine`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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
from shared.limits import fit_event
from shared.outbox import UnitOfWork, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompanyChange:
    """A company entering or changing (``profile``) or leaving (``profile`` None) the index."""

    company_id: str
    profile: CompanyProfile | None


T = TypeVar("T")


class MatchingEngine:
    """The in-memory index of every company profile: a cache of the committed CompanyView table.

    It is rebuilt from the table at start-up and otherwise changes only through :meth:`stage`, i.e.
    after the transaction that wrote the same change to the table has committed. A ranking inside
    that transaction sees the change through :meth:`preview`, which applies it and takes it back
    within one synchronous call, so no other coroutine ever meets an uncommitted index and a failed
    or retried transaction leaves the index exactly as the database is.
    """

    def __init__(self, *, top_n: int) -> None:
        self.matcher = Matcher()
        self.top_n = top_n
        self.profiles: dict[str, CompanyProfile] = {}

    async def load(self, db: Database) -> int:
        async with db.sessions() as session:
            rows = (await session.exec(select(CompanyView))).all()
        for row in rows:
            self._apply(CompanyChange(row.id, CompanyProfile.model_validate(row.profile)))
        return len(rows)

    def stage(self, uow: UnitOfWork, change: CompanyChange) -> None:
        """Apply ``change`` to the index once ``uow`` commits (never if it does not)."""
        uow.after_commit(lambda: self._apply(change))

    def preview(self, change: CompanyChange, compute: Callable[[], T]) -> T:
        """``compute()`` against the index with ``change`` applied; the index is unchanged afterwards.

        ``compute`` is synchronous by contract: nothing else runs while the change is applied.
        """
        undo = self._apply(change)
        try:
            result = compute()
        finally:
            self._apply(undo)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it rather than leave it to warn
            raise TypeError("preview(compute): compute must be synchronous, it returned an awaitable")
        return result

    def _apply(self, change: CompanyChange) -> CompanyChange:
        """Change the index; return the change that undoes it."""
        before = CompanyChange(change.company_id, self.profiles.get(change.company_id))
        if change.profile is None:
            self.profiles.pop(change.company_id, None)
            self.matcher.remove(change.company_id)
        else:
            self.profiles[change.company_id] = change.profile
            self.matcher.upsert(change.profile)
        return before

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


@dataclass(frozen=True)
class Ranking:
    """One target's ranked suggestions and consortium proposals, computed from the index."""

    target: Target
    suggestions: list[SuggestionItem]
    proposals: list[ConsortiumProposal]
    algorithm_version: str
    computed_at: datetime


def compute_ranking(engine: MatchingEngine, *, target: Target, ranked: list[Suggestion] | None = None) -> Ranking:
    """Rank the target (unless ``ranked`` is given) and propose consortia: index reads only, no I/O."""
    ranked = engine.rank(target) if ranked is None else ranked
    return Ranking(
        target=target,
        suggestions=[SuggestionItem.model_validate(s.model_dump(mode="json")) for s in ranked],
        proposals=[
            ConsortiumProposal.model_validate(p.model_dump(mode="json"))
            for p in propose_consortia(target, ranked, engine.profiles)
        ],
        algorithm_version=engine.matcher.ALGORITHM_VERSION,
        computed_at=datetime.now(UTC),
    )


async def upsert_target(uow: UnitOfWork, engine: MatchingEngine, *, target: Target) -> None:
    """Store an open target and publish its ranking."""
    row = await uow.session.get(TargetView, (target.target_type, target.id))
    if row is None:
        row = TargetView(target_type=target.target_type, target_id=target.id, target={})
    row.target = target.model_dump(mode="json")
    row.open = True
    row.updated_at = utcnow()
    uow.session.add(row)
    await publish_ranking(uow, compute_ranking(engine, target=target))


async def close_target(uow: UnitOfWork, *, target_type: str, target_id: str) -> None:
    row = await uow.session.get(TargetView, (target_type, target_id))
    if row is not None:
        row.open = False
        row.updated_at = utcnow()
        uow.session.add(row)


# Never cut when a derived event is too large: who and where (the ranking itself), not why.
_IDENTITY = frozenset(
    {"target_type", "target_id", "target_title", "programme", "algorithm_version", "computed_at"}
    | {"company_id", "company_name", "country", "rank", "score", "role", "rule", "passed", "signals"}
)


async def publish_ranking(uow: UnitOfWork, ranking: Ranking) -> SuggestionSet:
    """Keep the ranking and emit suggestions.computed and consortium.proposed.

    Both events quote the companies' and the target's texts, so with many long texts they could
    outgrow what Kafka takes (docs/limits.md). Then their explanations are cut short, the ranking
    never; what is stored is what is published.
    """
    target = ranking.target
    common: dict[str, Any] = {
        "target_type": target.target_type,
        "target_id": target.id,
        "target_title": target.title,
        "programme": target.programme,
        "algorithm_version": ranking.algorithm_version,
        "computed_at": ranking.computed_at,
    }
    suggested, cut_suggestions = fit_event(
        SuggestionsComputed(**common, domains=target.domains, suggestions=ranking.suggestions), keep=_IDENTITY
    )
    proposed, cut_proposals = fit_event(ConsortiumProposed(**common, proposals=ranking.proposals), keep=_IDENTITY)
    for what, cap in (("suggestions", cut_suggestions), ("consortium proposals", cut_proposals)):
        if cap is not None:
            log.warning(
                "%s of %s %s: explanations cut to %d characters to fit one event",
                what,
                target.target_type,
                target.id,
                cap,
            )
    stored = await uow.session.get(SuggestionSet, (target.target_type, target.id))
    if stored is None:
        stored = SuggestionSet(
            target_type=target.target_type, target_id=target.id, algorithm_version="", suggestions=[]
        )
    stored.algorithm_version = ranking.algorithm_version
    stored.suggestions = [i.model_dump(mode="json") for i in suggested.suggestions]
    stored.consortia = [p.model_dump(mode="json") for p in proposed.proposals]
    stored.computed_at = ranking.computed_at
    uow.session.add(stored)
    uow.emit(suggested, subject=target.id)
    uow.emit(proposed, subject=target.id)
    return stored


def _position(suggestions: list[dict[str, Any]], company_id: str) -> tuple[int, float] | None:
    for s in suggestions:
        if s["company_id"] == company_id:
            return int(s["rank"]), round(float(s["score"]), 4)
    return None


async def company_changed(uow: UnitOfWork, engine: MatchingEngine, *, profile: CompanyProfile) -> int:
    """Store a new or changed company; republish the targets where it enters, moves or leaves.

    The index takes the company when the transaction commits. Returns how many targets were republished.
    """
    row = await uow.session.get(CompanyView, profile.id) or CompanyView(id=profile.id, profile={})
    row.profile = profile.model_dump(mode="json")
    row.updated_at = utcnow()
    uow.session.add(row)
    return await _company_change(uow, engine, CompanyChange(profile.id, profile))


async def company_removed(uow: UnitOfWork, engine: MatchingEngine, *, company_id: str) -> int:
    row = await uow.session.get(CompanyView, company_id)
    if row is not None:
        await uow.session.delete(row)
    return await _company_change(uow, engine, CompanyChange(company_id, None))


@dataclass(frozen=True)
class _Published:
    target: Target
    suggestions: list[dict[str, Any]] | None
    """The stored ranking (None when the target has none yet)."""


async def _company_change(uow: UnitOfWork, engine: MatchingEngine, change: CompanyChange) -> int:
    """Republish the open targets the change moves (ranked on a preview), then stage it for the index."""
    rows = (
        await uow.session.exec(
            select(TargetView, SuggestionSet)
            .join(
                SuggestionSet,
                (col(SuggestionSet.target_type) == col(TargetView.target_type))
                & (col(SuggestionSet.target_id) == col(TargetView.target_id)),
                isouter=True,
            )
            .where(col(TargetView.open).is_(True))
        )
    ).all()
    published = [
        _Published(Target.model_validate(view.target), list(stored.suggestions) if stored else None)
        for view, stored in rows
    ]
    rankings = engine.preview(change, lambda: _rescore(engine, published, company_id=change.company_id))
    for ranking in rankings:
        await publish_ranking(uow, ranking)
    engine.stage(uow, change)
    return len(rankings)


def _rescore(engine: MatchingEngine, published: list[_Published], *, company_id: str) -> list[Ranking]:
    """New rankings for the targets where this company enters, leaves or moves in the top N.

    ``would_change`` rescores only this company against each target (O(its profile)), so one
    company's update does not re-rank every open target; a full ranking runs only where it matters.
    """
    rankings: list[Ranking] = []
    for item in published:
        current = [(s["company_id"], float(s["score"])) for s in item.suggestions or []]
        if item.suggestions is not None and not engine.matcher.would_change(
            item.target, company_id, current, engine.top_n
        ):
            continue
        ranked = engine.rank(item.target)
        new_pos = next(((s.rank, round(s.score, 4)) for s in ranked if s.company_id == company_id), None)
        old_pos = _position(item.suggestions, company_id) if item.suggestions is not None else None
        if new_pos != old_pos:
            rankings.append(compute_ranking(engine, target=item.target, ranked=ranked))
    return rankings


async def get_suggestions(uow: UnitOfWork, *, target_type: str, target_id: str) -> SuggestionSet | None:
    return await uow.session.get(SuggestionSet, (target_type, target_id))
