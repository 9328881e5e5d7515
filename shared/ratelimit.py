"""Sliding-window rate limits kept in memory: failed authentications per address, redeliveries per account."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``limit`` events per key within ``window_s``; then the key waits until the oldest ages out.

    In memory, per process: a limit of N per key is N per key *per replica*.
    """

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._events.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._events[key]
            return None
        return times

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it is below the limit."""
        now = self._clock()
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return None
        return max(0.0, times[-self.limit] + self.window_s - now)

    def record(self, key: str) -> None:
        now = self._clock()
        if len(self._events) >= self._max_keys:
            for other in list(self._events):
                self._recent(other, now)
            if len(self._events) >= self._max_keys:  # still full: forget the oldest offenders
                for other in list(self._events)[: self._max_keys // 10 or 1]:
                    del self._events[other]
        self._events.setdefault(key, deque()).append(now)
