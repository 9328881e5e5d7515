"""The call watcher's poller: one poll at a time, on a schedule and on demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from services.calls import use_cases
from services.calls.domain.portal import PortalConfig, PortalUnavailable, fetch_edf_topics
from services.calls.use_cases import Fetch, PollCounts
from shared.outbox import UnitOfWorkFactory, utcnow

log = logging.getLogger(__name__)


class CallPoller:
    """Serialises polls (the API's and the schedule's) with one asyncio.Lock and runs the schedule."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        config: PortalConfig,
        *,
        interval_s: float,
        retry_s: float,
        poll_on_start: bool = True,
        fetch: Fetch = fetch_edf_topics,
    ) -> None:
        self._uow = uow_factory
        self._config = config
        self._fetch = fetch
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.poll_on_start = poll_on_start
        self.lock = asyncio.Lock()
        self.last_counts: PollCounts | None = None
        self.last_success_at: datetime | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0

    async def poll_now(self) -> PollCounts:
        """Poll once, after any poll in progress; raises PortalUnavailable when the portal stays away."""
        async with self.lock:
            try:
                counts = await use_cases.poll_once(self._uow, self._config, fetch=self._fetch)
            except Exception as exc:
                self.consecutive_failures += 1
                self.last_error = str(exc) or type(exc).__name__
                raise
            self.consecutive_failures = 0
            self.last_error = None
            self.last_counts = counts
            self.last_success_at = utcnow()
            return counts

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` says about polling: the last successful poll and what it could not read."""
        counts = self.last_counts
        return {
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "complete": counts.complete if counts else None,
            "unparseable_rows": counts.unparseable_rows if counts else 0,
            "restarts": counts.restarts if counts else 0,
            "problems": len(counts.problems) if counts else 0,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
        }

    def retry_delay(self) -> float:
        """Wait after a failed scheduled poll: retry_s doubling per failure, at most the interval."""
        exponent = max(0, min(self.consecutive_failures - 1, 16))
        return min(self.interval_s, self.retry_s * 2**exponent)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll on start (if configured), then every interval until ``stop``; never dies on errors."""
        delay = 0.0 if self.poll_on_start else self.interval_s
        while not await _stopped_within(stop, delay):
            try:
                if not await self._poll_unless_stopped(stop):
                    return
            except PortalUnavailable as exc:
                delay = self.retry_delay()
                log.warning("scheduled poll failed: %s; stored calls unchanged, next try in %.1fs", exc, delay)
                continue
            except Exception:  # the database blinked, a bug: log it, keep the watcher alive
                delay = self.retry_delay()
                log.exception("scheduled poll failed; next try in %.1fs", delay)
                continue
            delay = self.interval_s

    async def _poll_unless_stopped(self, stop: asyncio.Event) -> bool:
        """Poll, but give up (and roll back) when the service stops; False when it stopped first."""
        poll = asyncio.ensure_future(self.poll_now())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not poll.done():
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
        if poll.cancelled():
            return False
        poll.result()
        return True


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as ``stop`` is set."""
    if seconds <= 0:
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
