"""HTTP requests with bounded retries, for clients of flaky public APIs (the Funding & Tenders Portal).

:func:`request_with_retries` sends one request and retries what may pass on a second try: timeouts,
connection errors, HTTP 429 and 5xx. It waits :func:`backoff_delay` between attempts (exponential with
equal jitter; a ``Retry-After`` header, capped, is a floor) and gives up after
``RetryPolicy.max_attempts`` with :class:`RetriesExhausted`. Any other 4xx is final at once:
:class:`RequestRejected`. Both carry the attempts made and the last error, so callers can map them to
their own exception types.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How patiently to ask: attempts in all, the backoff's first and largest step, the Retry-After cap."""

    max_attempts: int = 4
    base_s: float = 1.0
    max_s: float = 30.0
    retry_after_max_s: float = 120.0


class RetryError(RuntimeError):
    """A request failed for good after ``attempts`` attempts; ``last_error`` says how the last one failed.

    Callers may derive their own exceptions from it to reuse its fields.
    """

    def __init__(self, message: str, *, attempts: int, last_error: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class RetriesExhausted(RetryError):
    """Every attempt timed out, lost its connection, or was answered 429 or 5xx."""


class RequestRejected(RetryError):
    """Answered with a 4xx other than 429: asking again cannot help. ``response`` is that answer."""

    def __init__(self, message: str, *, attempts: int, response: httpx.Response) -> None:
        super().__init__(message, attempts=attempts, last_error=f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code


def is_retryable_status(status: int) -> bool:
    """429 and 5xx may pass on a later try; other error statuses will not."""
    return status == 429 or status >= 500


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """The wait after failed attempt ``attempt`` (1-based): equal-jitter exponential backoff.

    The step doubles from ``base_s`` up to ``max_s``; the delay is drawn from its upper half, so it still
    grows while callers spread out. ``retry_after`` (capped at ``retry_after_max_s``) is a floor.
    """
    ceiling = min(policy.max_s, policy.base_s * 2 ** (attempt - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.retry_after_max_s))
    return delay


async def request_with_retries(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Sleep = asyncio.sleep,
    timeout: float | None = None,
    label: str = "request",
    logger: logging.Logger = log,
    on_attempt: Callable[[int], None] | None = None,
    on_retry: Callable[[int, str, float], None] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send ``method url`` (``kwargs`` go to ``client.request``) until it succeeds or may not be retried.

    Returns the first answer below 400. Raises :class:`RequestRejected` on a 4xx other than 429 and
    :class:`RetriesExhausted` once ``policy.max_attempts`` attempts have failed. ``timeout`` (seconds)
    overrides the client's. Each retry is logged on ``logger`` as ``"{label} attempt n/N failed: ..."``;
    ``on_attempt(attempt)`` is called before every request, ``on_retry(attempt, last_error, delay)``
    before every wait.
    """
    if timeout is not None:
        kwargs["timeout"] = timeout
    last_error = ""
    for attempt in range(1, policy.max_attempts + 1):
        retry_after: float | None = None
        if on_attempt is not None:
            on_attempt(attempt)
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            waited = f" after {timeout}s" if timeout is not None else ""
            last_error = f"timeout{waited} ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last_error = f"connection error ({type(exc).__name__}: {exc})"
        else:
            status = response.status_code
            if status < 400:
                return response
            if not is_retryable_status(status):
                raise RequestRejected(
                    f"{label}: HTTP {status} {response.text[:200]!r}", attempts=attempt, response=response
                )
            last_error = f"HTTP {status}"
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if attempt == policy.max_attempts:
            break
        delay = backoff_delay(attempt, policy, retry_after)
        if on_retry is not None:
            on_retry(attempt, last_error, delay)
        logger.warning(
            "%s attempt %d/%d failed: %s; retrying in %.2fs", label, attempt, policy.max_attempts, last_error, delay
        )
        await sleep(delay)
    raise RetriesExhausted(
        f"{label}: {policy.max_attempts} attempts failed, last error: {last_error}",
        attempts=policy.max_attempts,
        last_error=last_error,
    )
