"""Long-lived Server-Sent Event streams (alerts inbox, project suggestions): waking them when this
process commits, capping them per account, and re-checking their caller while they stay open.

A stream outlives the token check that opened it. So it holds one of its account's slots
(:func:`stream_slot`, at most ``max_per_account`` per process: 429 beyond) and asks
:class:`Recheck` every auth-cache TTL whether its caller may still see it; when not, it sends
``event: closed`` with the reason and ends (docs/security.md, "Long-lived responses").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from fastapi import HTTPException, status
from fastapi.sse import ServerSentEvent

from shared.auth import Principal

StillAllowed = Callable[[], Awaitable[str | None]]
"""Re-checks a stream's caller: None to go on, or the reason to close."""


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


@contextlib.contextmanager
def stream_slot(hub: StreamHub, principal: Principal | None) -> Iterator[None]:
    """Hold one of the caller's stream slots while the stream is open; 429 (``Retry-After``) when none is free."""
    account = principal.account_id if principal is not None else "anonymous"
    try:
        hub.acquire(account)
    except TooManyStreams as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": "5"}) from exc
    try:
        yield
    finally:
        hub.release(account)


class Recheck:
    """Asks ``still_allowed`` every ``every_s`` seconds while a stream is open.

    A stream waits at most :meth:`wait_at_most` between looks, so a check is never late by more
    than one database read; :meth:`closing` is the ``closed`` event to send when the answer is no.
    """

    def __init__(self, still_allowed: StillAllowed | None, every_s: float) -> None:
        self._ask = still_allowed
        self.every_s = every_s
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + every_s

    def wait_at_most(self, poll_interval_s: float) -> float:
        if self._ask is None:
            return poll_interval_s
        return max(0.0, min(poll_interval_s, self._due - self._loop.time()))

    async def closing(self) -> ServerSentEvent | None:
        """``event: closed`` with the reason when the caller may no longer see the stream; None to go on."""
        if self._ask is None or self._loop.time() < self._due:
            return None
        reason = await self._ask()
        self._due = self._loop.time() + self.every_s
        return None if reason is None else ServerSentEvent(event="closed", data={"reason": reason})
