"""The matching service's in-memory index changes only after the transaction of its rankings commits.

Real PostgreSQL. A company change is ranked inside its transaction (the published suggestions include
it), but the index itself — and its position in companies.v1 — takes the change only once that
transaction commits: a transaction that fails, or is retried, leaves the index exactly as a replica
that replays the committed records would build it.
"""

from __future__ import annotations

import pytest

from services.matching import domain
from services.matching.engine import CompanyChange, MatchingEngine
from services.matching.matcher import CompanyProfile, Target
from services.matching.models import RankingInput, SuggestionSet, TargetView
from shared.db import Database
from shared.events.suggestions import SuggestionsComputed
from shared.outbox import OutboxRecord, UnitOfWorkFactory
from tests.infra import Databases

pytestmark = pytest.mark.infra

SONAR = Target(
    target_type="project",
    id="p-sonar",
    title="Autonomous mine countermeasures",
    programme="FSDB",
    summary="Underwater sonar and autonomous vehicles for mine countermeasures",
    sought_capabilities=["underwater acoustic sonar", "autonomous underwater vehicles"],
    domains=["maritime"],
)


def _company(cid: str, capabilities: list[str]) -> CompanyProfile:
    return CompanyProfile(id=cid, name=cid, country="BE", domains=["maritime"], capabilities=capabilities)


FIRST = _company("first", ["naval platform integration"])
SONAR_SME = _company("sonar-sme", ["underwater acoustic sonar signal processing", "autonomous underwater vehicles"])


class TransactionFailed(RuntimeError):
    pass


def _ranked_ids(engine: MatchingEngine) -> list[tuple[str, float]]:
    return [(s.company_id, round(s.score, 6)) for s in engine.rank(SONAR)]


def _replayed(*changes: CompanyChange) -> MatchingEngine:
    """A replica that read these committed records of companies.v1 (partition 0) from the start."""
    engine = MatchingEngine(top_n=5)
    for offset, change in enumerate(changes):
        engine.apply_now(change, partition=0, next_offset=offset + 1)
    return engine


def _changed(uow, engine, profile: CompanyProfile, offset: int):  # type: ignore[no-untyped-def]
    change = CompanyChange(profile.id, profile)
    return domain.company_changed(uow, engine, change=change, partition=0, next_offset=offset + 1)


def _removed(uow, engine, company_id: str, offset: int):  # type: ignore[no-untyped-def]
    change = CompanyChange(company_id, None)
    return domain.company_changed(uow, engine, change=change, partition=0, next_offset=offset + 1)


async def test_the_index_changes_only_after_the_transaction_that_records_it_commits(databases: Databases) -> None:
    db = Database(databases.create("matching_index"), tables=[OutboxRecord, TargetView, SuggestionSet, RankingInput])
    await db.create_tables()
    uows = UnitOfWorkFactory(db, source="matching")
    engine = MatchingEngine(top_n=5)
    async with uows() as uow:
        await _changed(uow, engine, FIRST, 0)
        await uow.commit()
    async with uows() as uow:
        await domain.upsert_target(uow, engine, target=SONAR)
        await uow.commit()
    committed = _ranked_ids(engine)
    assert [cid for cid, _ in committed] == ["first"]

    # The sonar SME registers; the ranking in its transaction includes it, the index does not yet.
    with pytest.raises(TransactionFailed):
        async with uows() as uow:
            assert await _changed(uow, engine, SONAR_SME, 1) == 1
            [published] = [e for e in uow.events if e.type == SuggestionsComputed.event_type]
            assert published.data["suggestions"][0]["company_id"] == "sonar-sme"
            assert "sonar-sme" not in engine.matcher and "sonar-sme" not in engine.profiles
            raise TransactionFailed("the commit never happened")
    # The failed transaction left the index (and where it stands in companies.v1) as it was.
    assert "sonar-sme" not in engine.matcher and "sonar-sme" not in engine.profiles
    assert engine.position == {0: 1}
    first = CompanyChange(FIRST.id, FIRST)
    assert _ranked_ids(engine) == committed == _ranked_ids(_replayed(first))

    # The retry commits: now, and only now, the index has it; once, as a replay would.
    sme = CompanyChange(SONAR_SME.id, SONAR_SME)
    async with uows() as uow:
        await _changed(uow, engine, SONAR_SME, 1)
        assert "sonar-sme" not in engine.matcher
        await uow.commit()
    assert "sonar-sme" in engine.matcher and engine.position == {0: 2}
    assert _ranked_ids(engine) == _ranked_ids(_replayed(first, sme))

    # A removal that does not commit leaves the company indexed.
    with pytest.raises(TransactionFailed):
        async with uows() as uow:
            await _removed(uow, engine, "sonar-sme", 2)
            raise TransactionFailed("rolled back")
    assert "sonar-sme" in engine.matcher and engine.position == {0: 2}
    assert _ranked_ids(engine) == _ranked_ids(_replayed(first, sme))
    async with uows() as uow:
        await _removed(uow, engine, "sonar-sme", 2)
        await uow.commit()
    assert "sonar-sme" not in engine.matcher
    gone = CompanyChange("sonar-sme", None)
    assert _ranked_ids(engine) == _ranked_ids(_replayed(first, sme, gone)) == committed
    await db.dispose()


def test_a_preview_cannot_span_an_await() -> None:
    engine = MatchingEngine(top_n=5)

    async def ranks_later() -> None:
        return None

    with pytest.raises(TypeError, match="synchronous"):
        engine.preview(CompanyChange("x", FIRST), ranks_later)  # type: ignore[arg-type,return-value]
    assert "x" not in engine.matcher
