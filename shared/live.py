"""Waking open Server-Sent Event streams when this process commits (alerts inbox, project suggestions)."""

from __future__ import annotations

import asyncio
import contextlib


class StreamHub:
    """Wakes every open stream of this process after a commit; race-free through a version counter.

    A stream reads ``version``, looks for news, then waits with the version it read: a commit that
    happened in between has already moved the version, so the wait returns at once. Commits of other
    replicas are not seen here: a stream also re-checks after its poll interval.
    """

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

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
