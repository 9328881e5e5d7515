"""Matching use cases: keep the target read model, rank targets, emit suggestions and consortium proposals.

The ranking itself lives in ``services.matching.matcher`` (the same code the benchmark measures);
this module decides *when* to rank and what to publish. Functions here never commit: the caller's
unit of work commits the read-model change, the stored ranking and the emitted events in one
transaction, and only then does the in-memory index follow (:class:`MatchingEngine`).

Every stored ranking records its input (:class:`RankingInput`): the target's version and the index
position in companies.v1. Its events' ids are derived from that input, and a ranking computed from
an older input than the stored one is dropped, so two replicas ranking one target during a
rebalance publish one result, never an older one over a newer one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from services.matching.engine import CompanyChange, MatchingEngine, Position, not_older, position_text
from services.matching.matcher import CompanyProfile, Suggestion, Target, propose_consortia
from services.matching.models import RankingInput, SuggestionSet, TargetView
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

# The namespace of ranking event ids (uuid5 of the ranking's input); any fixed UUID will do.
RANKING_NAMESPACE = uuid.UUID("6b0d6e00-5ca1-4e0a-9b1d-000000000013")


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


def ranking_event_id(
    event_type: str, target: Target, *, target_version: int, position: Position, algorithm: str
) -> str:
    """The id of a ranking's event: the same for every replica that ranks the same input."""
    name = "|".join(
        [event_type, target.target_type, target.id, str(target_version), position_text(position), algorithm]
    )
    return str(uuid.uuid5(RANKING_NAMESPACE, name))


async def _inputs(uow: UnitOfWork, *, target_type: str, target_id: str) -> RankingInput:
    """The target's ranking input, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    row = await uow.session.get(RankingInput, (target_type, target_id), with_for_update=True)
    if row is None:
        row = RankingInput(target_type=target_type, target_id=target_id, index_position={})
        uow.session.add(row)
    return row


def _stored_position(inputs: RankingInput) -> dict[int, int]:
    return {int(p): o for p, o in inputs.index_position.items()}


async def upsert_target(uow: UnitOfWork, engine: MatchingEngine, *, target: Target) -> None:
    """Store an open target (a new version of it) and publish its ranking."""
    row = await uow.session.get(TargetView, (target.target_type, target.id))
    if row is None:
        row = TargetView(target_type=target.target_type, target_id=target.id, target={})
    row.target = target.model_dump(mode="json")
    row.open = True
    row.updated_at = utcnow()
    uow.session.add(row)
    inputs = await _inputs(uow, target_type=target.target_type, target_id=target.id)
    inputs.target_version += 1
    await publish_ranking(uow, compute_ranking(engine, target=target), inputs=inputs, position=engine.position)


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


async def publish_ranking(uow: UnitOfWork, ranking: Ranking, *, inputs: RankingInput, position: Position) -> bool:
    """Keep the ranking and emit suggestions.computed and consortium.proposed — unless it is not news.

    It is not news when the stored ranking was computed from the same target version and an index
    that had read as much (the same input: the same result is out already) or more (this one is stale:
    a replica that lags behind must not overwrite a fresher result). Returns whether it was published.

    Both events quote the companies' and the target's texts, so with many long texts they could
    outgrow what Kafka takes (docs/limits.md). Then their explanations are cut short, the ranking
    never; what is stored is what is published.
    """
    if inputs.ranked_version == inputs.target_version:
        stored = _stored_position(inputs)
        if not not_older(position, stored) or dict(position) == stored:
            log.info(
                "%s %s: ranking from %s not published, the stored one is from %s",
                inputs.target_type,
                inputs.target_id,
                position_text(position),
                position_text(stored),
            )
            return False
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
    stored_set = await uow.session.get(SuggestionSet, (target.target_type, target.id))
    if stored_set is None:
        stored_set = SuggestionSet(
            target_type=target.target_type, target_id=target.id, algorithm_version="", suggestions=[]
        )
    stored_set.algorithm_version = ranking.algorithm_version
    stored_set.suggestions = [i.model_dump(mode="json") for i in suggested.suggestions]
    stored_set.consortia = [p.model_dump(mode="json") for p in proposed.proposals]
    stored_set.computed_at = ranking.computed_at
    uow.session.add(stored_set)
    inputs.ranked_version = inputs.target_version
    inputs.index_position = {str(p): o for p, o in position.items()}
    inputs.updated_at = utcnow()
    uow.session.add(inputs)
    for data in (suggested, proposed):
        event_id = ranking_event_id(
            data.event_type,
            target,
            target_version=inputs.target_version,
            position=position,
            algorithm=ranking.algorithm_version,
        )
        uow.emit(data, subject=target.id, event_id=event_id)
    return True


def _position(suggestions: list[dict[str, Any]], company_id: str) -> tuple[int, float] | None:
    for s in suggestions:
        if s["company_id"] == company_id:
            return int(s["rank"]), round(float(s["score"]), 4)
    return None


def _placings(suggestions: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(s["company_id"], int(s["rank"])) for s in suggestions]


@dataclass(frozen=True)
class _Published:
    target: Target
    suggestions: list[dict[str, Any]] | None
    """The stored ranking (None when the target has none yet)."""


async def _owned_open_targets(uow: UnitOfWork, engine: MatchingEngine) -> list[_Published]:
    """The open targets this replica ranks, with their stored rankings."""
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
    return [
        _Published(Target.model_validate(view.target), list(stored.suggestions) if stored else None)
        for view, stored in rows
        if engine.owns(view.target_type, view.target_id)
    ]


async def company_changed(
    uow: UnitOfWork, engine: MatchingEngine, *, change: CompanyChange, partition: int, next_offset: int
) -> int:
    """A company registered, changed or left (its record at ``next_offset - 1`` of companies.v1 ``partition``).

    Republishes the open targets *this replica owns* where the company enters, moves or leaves (ranked
    on a preview of the change), then stages the change for the index. Returns how many were republished.
    """
    after = {**engine.position, partition: next_offset}
    published = await _owned_open_targets(uow, engine)
    rankings = engine.preview(change, lambda: _rescore(engine, published, company_id=change.company_id))
    count = 0
    for ranking in rankings:
        inputs = await _inputs(uow, target_type=ranking.target.target_type, target_id=ranking.target.id)
        count += await publish_ranking(uow, ranking, inputs=inputs, position=after)
    engine.stage(uow, change, partition=partition, next_offset=next_offset)
    return count


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


async def owned_open_targets(uow: UnitOfWork, engine: MatchingEngine) -> list[tuple[str, str]]:
    """(type, id) of every open target this replica ranks now."""
    return [(p.target.target_type, p.target.id) for p in await _owned_open_targets(uow, engine)]


async def refresh_target(uow: UnitOfWork, engine: MatchingEngine, *, target_type: str, target_id: str) -> bool:
    """Rank an open target on the current index; publish when its placings differ from the stored ones.

    What a replica does for the targets of the partitions it was just given: their previous owner may
    have missed company changes it had not read yet, or this index may hold changes nobody ranked.
    Placings are (company, rank): scores alone drift a little between replicas (each compacts its index
    at its own moments, and unrelated companies shift the normalisers), which is not worth an event.
    """
    view = await uow.session.get(TargetView, (target_type, target_id))
    if view is None or not view.open:
        return False
    inputs = await _inputs(uow, target_type=target_type, target_id=target_id)
    if inputs.ranked_version == inputs.target_version and _stored_position(inputs) == dict(engine.position):
        return False  # ranked from exactly this input already
    target = Target.model_validate(view.target)
    ranked = engine.rank(target)
    stored = await uow.session.get(SuggestionSet, (target_type, target_id))
    if stored is not None and _placings(stored.suggestions) == [(s.company_id, s.rank) for s in ranked]:
        return False
    return await publish_ranking(
        uow, compute_ranking(engine, target=target, ranked=ranked), inputs=inputs, position=engine.position
    )


async def get_suggestions(uow: UnitOfWork, *, target_type: str, target_id: str) -> SuggestionSet | None:
    return await uow.session.get(SuggestionSet, (target_type, target_id))
