"""Two matching replicas on one database while a target's partition moves from one to the other.

Real PostgreSQL; the two replicas are two engines (each its own index and position in companies.v1)
sharing the matching database, as two processes do. Kafka's part — which replica owns the partition
when — is played out step by step, so every interleaving of "a company changes" with "the partition
moves" is run, not left to timing. The same code runs in the service: ``company_changed`` is what
the companies feed calls per record, ``refresh_target`` what a new owner calls per open target.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlmodel import col, select

from services.alerts.delivery_models import DELIVERY_TABLES
from services.alerts.domain import on_suggestions_computed
from services.alerts.models import Alert, Subscription
from services.matching import domain
from services.matching.engine import CompanyChange, MatchingEngine
from services.matching.models import RankingInput, SuggestionSet, TargetView
from shared.db import Database
from shared.events.base import CloudEvent
from shared.events.suggestions import SuggestionsComputed
from shared.outbox import OutboxRecord, UnitOfWorkFactory
from tests.infra import Databases
from tests.integration.test_matching_index import FIRST, SONAR, SONAR_SME, _company

pytestmark = pytest.mark.infra

HULL = _company("hull-works", ["hull sonar domes for autonomous underwater vehicles"])


@dataclass
class Replica:
    """One matching replica: its index, and whether the group currently gives it SONAR's partition."""

    name: str
    engine: MatchingEngine
    owner: bool = False

    def __post_init__(self) -> None:
        self.engine.owns = lambda target_type, target_id: self.owner


@dataclass
class World:
    uows: UnitOfWorkFactory
    a: Replica
    b: Replica

    async def read(self, replica: Replica, change: CompanyChange, offset: int) -> int:
        """The replica's feed reads the company record at ``offset`` of companies.v1 partition 0."""
        async with self.uows() as uow:
            n = await domain.company_changed(uow, replica.engine, change=change, partition=0, next_offset=offset + 1)
            await uow.commit()
        return n

    async def take_over(self, replica: Replica) -> int:
        """The group gave the replica the partition: it re-ranks the open targets it now owns."""
        replica.owner = True
        republished = 0
        async with self.uows() as uow:
            owned = await domain.owned_open_targets(uow, replica.engine)
        for target_type, target_id in owned:
            async with self.uows() as uow:
                republished += await domain.refresh_target(
                    uow, replica.engine, target_type=target_type, target_id=target_id
                )
                await uow.commit()
        return republished

    async def computed(self) -> list[CloudEvent]:
        async with self.uows() as uow:
            rows = (
                await uow.session.exec(
                    select(OutboxRecord)
                    .where(col(OutboxRecord.event_type) == SuggestionsComputed.event_type)
                    .order_by(col(OutboxRecord.id))
                )
            ).all()
            return [CloudEvent.model_validate(json.loads(r.payload)) for r in rows]

    async def stored(self) -> list[str]:
        async with self.uows() as uow:
            found = await uow.session.get(SuggestionSet, ("project", SONAR.id))
            assert found is not None
            return [s["company_id"] for s in found.suggestions]


@pytest.fixture
async def world(databases: Databases) -> AsyncIterator[World]:
    db = Database(databases.create("matching"), tables=[OutboxRecord, TargetView, SuggestionSet, RankingInput])
    await db.create_tables()
    uows = UnitOfWorkFactory(db, source="matching")
    replicas = [Replica(name, MatchingEngine(top_n=5)) for name in ("a", "b")]
    for replica in replicas:  # both have read FIRST (companies.v1 partition 0, offset 0)
        replica.engine.apply_now(CompanyChange(FIRST.id, FIRST), partition=0, next_offset=1)
    w = World(uows, *replicas)
    w.a.owner = True
    async with uows() as uow:  # A owns SONAR's partition and ranked it
        await domain.upsert_target(uow, w.a.engine, target=SONAR)
        await uow.commit()
    yield w
    await db.dispose()


SME = CompanyChange(SONAR_SME.id, SONAR_SME)


INTERLEAVINGS: dict[str, list[str]] = {
    # Where the company record falls relative to the hand-over. Kafka revokes from A before it assigns to B.
    "A reads, revoke, B reads, assign": ["a reads", "revoke", "b reads", "assign"],
    "A reads, revoke, assign, B reads": ["a reads", "revoke", "assign", "b reads"],
    "revoke, A reads, B reads, assign": ["revoke", "a reads", "b reads", "assign"],
    "revoke, B reads, A reads, assign": ["revoke", "b reads", "a reads", "assign"],
    "revoke, A reads, assign, B reads": ["revoke", "a reads", "assign", "b reads"],
    "revoke, assign, B reads, A reads": ["revoke", "assign", "b reads", "a reads"],
}


@pytest.mark.parametrize("steps", list(INTERLEAVINGS.values()), ids=list(INTERLEAVINGS))
async def test_a_company_registered_while_the_partition_moves_is_ranked_in_once(world: World, steps: list[str]) -> None:
    w = world
    assert len(await w.computed()) == 1  # A's first ranking, without the sonar SME
    for step in steps:
        if step == "a reads":
            await w.read(w.a, SME, 1)
        elif step == "b reads":
            await w.read(w.b, SME, 1)
        elif step == "revoke":
            w.a.owner = False
        elif step == "assign":
            # B may only rank once it has read up to the log end it sees now (ownership.py waits for it).
            if "sonar-sme" not in w.b.engine.matcher:
                await w.read(w.b, SME, 1)
            await w.take_over(w.b)
    # Both indexes have the company; the target's stored ranking has it; it was published once.
    assert "sonar-sme" in w.a.engine.matcher and "sonar-sme" in w.b.engine.matcher
    assert (await w.stored())[0] == "sonar-sme"
    events = await w.computed()
    with_sme = [e for e in events if any(s["company_id"] == "sonar-sme" for s in e.data["suggestions"])]
    assert len(with_sme) == 1, [e.data["suggestions"] for e in events]
    assert len(events) == 2


async def test_a_replica_that_lags_behind_never_overwrites_a_fresher_ranking(world: World) -> None:
    w = world
    await w.read(w.a, SME, 1)  # A owns the target and ranks the SME in
    assert (await w.stored())[0] == "sonar-sme"
    # B was given the partition while it had not read the SME yet (a replica that missed its fence).
    assert await w.take_over(w.b) == 0
    assert (await w.stored())[0] == "sonar-sme"
    assert len(await w.computed()) == 2
    async with w.uows() as uow:
        inputs = await uow.session.get(RankingInput, ("project", SONAR.id))
        assert inputs is not None and inputs.index_position == {"0": 2}


async def test_the_same_input_ranked_by_two_replicas_is_one_event(world: World) -> None:
    w = world
    await w.read(w.a, SME, 1)
    await w.read(w.b, SME, 1)  # B is at the same position as A: {0: 2}
    [_, published] = await w.computed()
    async with w.uows() as uow:
        inputs = await uow.session.get(RankingInput, ("project", SONAR.id))
        assert inputs is not None
        again = domain.ranking_event_id(
            SuggestionsComputed.event_type,
            SONAR,
            target_version=inputs.target_version,
            position=w.b.engine.position,
            algorithm=w.b.engine.matcher.ALGORITHM_VERSION,
        )
    assert again == published.id  # B would publish the very same event id ...
    assert await w.take_over(w.b) == 0  # ... and, finding that input ranked already, publishes nothing
    assert len(await w.computed()) == 2


async def test_a_target_ranked_by_both_replicas_alerts_each_company_once(world: World, databases: Databases) -> None:
    """Both replicas publish a ranking of the target (different inputs); the alerts service raises one alert each."""
    w = world
    await w.read(w.a, SME, 1)  # A ranks the SME in, then loses the partition
    w.a.owner = False
    await w.read(w.b, SME, 1)
    await w.read(w.b, CompanyChange(HULL.id, HULL), 2)  # B has read one more company since
    assert await w.take_over(w.b) == 1  # its placings differ: a second ranking of the same target
    events = await w.computed()
    assert len(events) == 3 and len({e.id for e in events}) == 3

    alerts_db = Database(databases.create("alerts"), tables=[OutboxRecord, Subscription, Alert, *DELIVERY_TABLES])
    await alerts_db.create_tables()
    alerts = UnitOfWorkFactory(alerts_db, source="alerts")
    async with alerts() as uow:
        for cid in ("first", "sonar-sme", "hull-works"):
            uow.session.add(Subscription(company_id=cid, programmes=[], domains=[], keywords=[], min_score=0.0))
        await uow.commit()
    for event in events:  # as the alerts consumer applies them, in order
        async with alerts() as uow:
            await on_suggestions_computed(uow, event, SuggestionsComputed.model_validate(event.data))
            await uow.commit()
    async with alerts() as uow:
        raised = (await uow.session.exec(select(Alert.company_id, Alert.target_id))).all()
    assert sorted(raised) == [("first", SONAR.id), ("hull-works", SONAR.id), ("sonar-sme", SONAR.id)]
    await alerts_db.dispose()
