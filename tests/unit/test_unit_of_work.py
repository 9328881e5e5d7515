"""After-commit actions of the unit of work: after a commit only, once, and never after a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db import Database
from shared.outbox import AfterCommitFailed, OutboxRecord, UnitOfWorkFactory


@pytest.fixture
async def uow_factory(tmp_path: Path) -> UnitOfWorkFactory:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}", tables=[OutboxRecord])
    await db.create_tables()
    return UnitOfWorkFactory(db, source="test")


async def test_after_commit_actions_run_in_order_once_the_transaction_committed(uow_factory: UnitOfWorkFactory) -> None:
    ran: list[str] = []
    async with uow_factory() as uow:
        uow.after_commit(lambda: ran.append("first"))
        uow.after_commit(lambda: ran.append("second"))
        assert ran == []
        await uow.commit()
        assert ran == ["first", "second"]
        await uow.commit()  # a second commit of the same unit does not repeat them
    assert ran == ["first", "second"]


async def test_after_commit_actions_are_dropped_when_the_unit_does_not_commit(uow_factory: UnitOfWorkFactory) -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        async with uow_factory() as uow:
            uow.after_commit(lambda: ran.append("lost"))
            raise RuntimeError("the handler failed")
    async with uow_factory() as uow:
        uow.after_commit(lambda: ran.append("rolled back"))
        await uow.rollback()
        await uow.commit()
    assert ran == []


async def test_a_failing_after_commit_action_is_reported_not_swallowed(uow_factory: UnitOfWorkFactory) -> None:
    def broken() -> None:
        raise ValueError("index corrupt")

    async with uow_factory() as uow:
        uow.after_commit(broken)
        with pytest.raises(AfterCommitFailed, match="index corrupt"):
            await uow.commit()
