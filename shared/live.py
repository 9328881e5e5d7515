"""Waking open Server-Sent Event streams when this process commits (alerts inbox, project suggestions)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter


class TooManyStreams(RuntimeError):
    """The account has its maximum of open streams in this process."""


class StreamHub:
    """Wakes every open stream of this process after a commit; race-free through a version counter.

    A stream reads ``version``, looks for news, then waits with the version it read: a commit that
    happened in between has already moved the version, so the wait returns at once. Commits of other
    replicas are not seen here: a stream also re-checks after its poll interval.

    The hub also counts the open streams per account (:meth:`acquire`/:meth:`release`), so one
    account cannot hold an unbounded number of connections and database pollers open.
    """

    def __init__(self, *, max_per_account: int = 5) -> None:
        self.version = 0
        self._changed = asyncio.Event()
        self.max_per_account = max_per_account
        self.open: Counter[str] = Counter()

    def acquire(self, account_id: str) -> None:
        """Take one of the account's stream slots; raises :class:`TooManyStreams` when none is free."""
        if self.open[account_id] >= self.max_per_account:
            raise TooManyStreams(f"at most {self.max_per_account} open streams per account")
        self.open[account_id] += 1

    def release(self, account_id: str) -> None:
        self.open[account_id] -= 1
        if self.open[account_id] <= 0:
            del self.open[account_id]

    def notify(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen_version: int, timeout: float) -> None:
        """Return once something was committed after ``seen_version`` was read, or after ``timeout``."""
        if self.version != seen_version:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
