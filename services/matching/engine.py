"""The in-memory index of one matching replica, where it stands in companies.v1, and whose turn it is.

Every replica holds *every* company (it reads all of ``companies.v1``, see ``index_feed.py``), so
any replica can rank any target; which targets it ranks is decided by the consumer group
(``ownership.py``). This module is the state those two share inside one process.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from services.matching.matcher import CompanyProfile, Matcher, Suggestion, Target
from shared.outbox import UnitOfWork

T = TypeVar("T")

Position = Mapping[int, int]
"""Where an index stands in companies.v1: partition → offset of the next record to read."""


def not_older(mine: Position, stored: Position) -> bool:
    """Whether an index at ``mine`` has read at least everything an index at ``stored`` had."""
    return all(mine.get(partition, 0) >= offset for partition, offset in stored.items())


def position_text(position: Position) -> str:
    """A canonical spelling of a position (part of a ranking's deterministic event id)."""
    return ",".join(f"{p}:{o}" for p, o in sorted(position.items()))


@dataclass(frozen=True)
class CompanyChange:
    """A company entering or changing (``profile``) or leaving (``profile`` None) the index."""

    company_id: str
    profile: CompanyProfile | None


def _owns_everything(target_type: str, target_id: str) -> bool:
    return True


class MatchingEngine:
    """The index of every company profile, its position in companies.v1, and the turn of its users.

    The index changes only through :meth:`stage` (after the transaction that published the rankings
    the change caused has committed) or :meth:`apply_now` (while the index is first built, when no
    ranking reads it). A ranking inside a transaction sees a pending change through :meth:`preview`,
    which applies it and takes it back within one synchronous call.

    Two consumers use the index in one process: the companies feed (every record of companies.v1)
    and the targets consumer (the partitions of projects.v1 and calls.v1 the group gave this
    replica). Each unit of work of either runs inside :meth:`turn` or holds :attr:`lock`, so a
    company change and a target ranking never interleave: a target committed first is seen by the
    company's rescoring; a company committed first is in the target's ranking.
    """

    def __init__(self, *, top_n: int) -> None:
        self.matcher = Matcher()
        self.top_n = top_n
        self.profiles: dict[str, CompanyProfile] = {}
        self.position: dict[int, int] = {}
        self.lock = asyncio.Lock()
        # Set while the index has read companies.v1 up to the mark of the latest partition assignment:
        # targets wait for it, so a new owner never ranks from an index older than its predecessor's.
        self.caught_up = asyncio.Event()
        self.owns: Callable[[str, str], bool] = _owns_everything

    # -- changing the index ------------------------------------------------------------------

    def stage(self, uow: UnitOfWork, change: CompanyChange | None, *, partition: int, next_offset: int) -> None:
        """Apply ``change`` (and move the position past its record) once ``uow`` commits; never if it does not."""
        uow.after_commit(lambda: self.apply_now(change, partition=partition, next_offset=next_offset))

    def apply_now(self, change: CompanyChange | None, *, partition: int, next_offset: int) -> None:
        """Apply a record's change (None: the record changes no profile) and move past it."""
        if change is not None:
            self._apply(change)
        self.position[partition] = next_offset

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

    # -- reading it ----------------------------------------------------------------------------

    def rank(self, target: Target) -> list[Suggestion]:
        return self.matcher.rank(target, top_n=self.top_n)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the index for one unit of work of the targets consumer, once it has caught up.

        Waiting happens before the lock is taken: the feed that must advance meanwhile needs it.
        """
        while True:
            await self.caught_up.wait()
            await self.lock.acquire()
            if self.caught_up.is_set():
                break
            self.lock.release()  # a new assignment arrived meanwhile: wait for its mark
        try:
            yield
        finally:
            self.lock.release()
