"""The matching service's in-memory index follows the database: it changes only after a commit.

Real PostgreSQL. A company change is ranked inside its transaction (the published suggestions include
it), but the index itself takes the change only once that transaction commits: a transaction that
fails, or is retried, leaves the index exactly as a fresh load from the database would build it.
"""

from __future__ import annotations

import pytest

from services.matching import domain
from services.matching.domain import MatchingEngine
from services.matching.matcher import CompanyProfile, Target
from services.matching.models import CompanyView, SuggestionSet, TargetView
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


async def _fresh(db: Database) -> MatchingEngine:
    engine = MatchingEngine(top_n=5)
    await engine.load(db)
    return engine


async def test_the_index_changes_only_after_the_transaction_that_records_it_commits(databases: Databases) -> None:
    db = Database(databases.create("matching_index"), tables=[OutboxRecord, CompanyView, TargetView, SuggestionSet])
    await db.create_tables()
    uows = UnitOfWorkFactory(db, source="matching")
    engine = MatchingEngine(top_n=5)
    async with uows() as uow:
        await domain.company_changed(uow, engine, profile=FIRST)
        await uow.commit()
    async with uows() as uow:
        await domain.upsert_target(uow, engine, target=SONAR)
        await uow.commit()
    committed = _ranked_ids(engine)
    assert [cid for cid, _ in committed] == ["first"]

    # The sonar SME registers; the ranking in its transaction includes it, the index does not yet.
    with pytest.raises(TransactionFailed):
        async with uows() as uow:
            assert await domain.company_changed(uow, engine, profile=SONAR_SME) == 1
            [published] = [e for e in uow.events if e.type == SuggestionsComputed.event_type]
            assert published.data["suggestions"][0]["company_id"] == "sonar-sme"
            assert "sonar-sme" not in engine.matcher and "sonar-sme" not in engine.profiles
            raise TransactionFailed("the commit never happened")
    # The failed transaction left the index as the database is.
    assert "sonar-sme" not in engine.matcher and "sonar-sme" not in engine.profiles
    assert _ranked_ids(engine) == committed == _ranked_ids(await _fresh(db))

    # The retry commits: now, and only now, the index has it; once, as a fresh load would.
    async with uows() as uow:
        await domain.company_changed(uow, engine, profile=SONAR_SME)
        assert "sonar-sme" not in engine.matcher
        await uow.commit()
    assert "sonar-sme" in engine.matcher
    assert _ranked_ids(engine) == _ranked_ids(await _fresh(db))

    # A removal that does not commit leaves the company indexed.
    with pytest.raises(TransactionFailed):
        async with uows() as uow:
            await domain.company_removed(uow, engine, company_id="sonar-sme")
            raise TransactionFailed("rolled back")
    assert "sonar-sme" in engine.matcher
    assert _ranked_ids(engine) == _ranked_ids(await _fresh(db))
    async with uows() as uow:
        await domain.company_removed(uow, engine, company_id="sonar-sme")
        await uow.commit()
    assert "sonar-sme" not in engine.matcher
    assert _ranked_ids(engine) == _ranked_ids(await _fresh(db)) == committed
    await db.dispose()


def test_a_preview_cannot_span_an_await() -> None:
    engine = MatchingEngine(top_n=5)

    async def ranks_later() -> None:
        return None

    with pytest.raises(TypeError, match="synchronous"):
        engine.preview(domain.CompanyChange("x", FIRST), ranks_later)  # type: ignore[arg-type,return-value]
    assert "x" not in engine.matcher
