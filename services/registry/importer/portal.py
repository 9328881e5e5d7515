"""Async client for the two Funding & Tenders Portal endpoints the importer reads.

``fetch_topic_projects`` lists a topic's funded projects (``topicProjectsList.json``);
``fetch_project_participants`` reads one project's search-api document (details and consortium).
Timeouts, connection errors, HTTP 429 and 5xx are retried a bounded number of times with exponential
backoff and jitter (``Retry-After`` is honoured, capped); other 4xx answers are final. Formats: see
:mod:`services.registry.importer.formats`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx

from services.registry.importer.formats import (
    EDF_PROGRAMME_ID,
    ProjectDocument,
    ProjectSummary,
    parse_project_document,
    parse_topic_projects,
)

log = logging.getLogger(__name__)

DEFAULT_PROJECTS_URL = "https://ec.europa.eu/info/funding-tenders/opportunities/api/topicProjectsList.json"
DEFAULT_DOCUMENT_URL = "https://api.tech.ec.europa.eu/search-api/prod/rest/document"
DOCUMENT_API_KEY = "SEDIA_NONH2020_PROD"

Sleep = Callable[[float], Awaitable[None]]


class PortalError(RuntimeError):
    """A portal request failed for good."""


class PortalUnavailable(PortalError):
    """Retries exhausted: timeouts, connection errors, 429 or 5xx every time."""

    def __init__(self, message: str, *, attempts: int, last_error: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class PortalRejected(PortalError):
    """A 4xx other than 429 (unknown project, bad key): asking again cannot help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PortalConfig:
    """Where the endpoints are and how patiently to ask them."""

    projects_url: str = DEFAULT_PROJECTS_URL
    document_url: str = DEFAULT_DOCUMENT_URL
    document_api_key: str = DOCUMENT_API_KEY
    programme_id: str = EDF_PROGRAMME_ID
    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    user_agent: str = "bondgenoot-registry-importer/1"


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


def backoff_delay(attempt: int, config: PortalConfig, retry_after: float | None = None) -> float:
    """Equal-jitter exponential backoff after failed attempt ``attempt`` (1-based); Retry-After is a floor."""
    ceiling = min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.retry_after_max_s))
    return delay


class FundingPortal:
    """The client. Use as ``async with FundingPortal(config) as portal:`` or pass your own httpx client."""

    def __init__(
        self,
        config: PortalConfig | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config or PortalConfig()
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            headers={"Accept": "application/json", "User-Agent": self.config.user_agent},
            follow_redirects=True,
        )
        self._sleep = sleep
        self.requests_made = 0
        self.retries = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def fetch_topic_projects(self, ccm2_id: str) -> list[ProjectSummary]:
        """The funded projects of one topic, by its ccm2Id (an empty list when none were funded)."""
        response = await self._get(self.config.projects_url, {"topicId": ccm2_id}, what=f"topic {ccm2_id}")
        return parse_topic_projects(response.content)

    async def fetch_project_participants(self, programme_id: str, project_id: str) -> ProjectDocument:
        """One project's document: its dates, objective and participants (decoded from the JSON string)."""
        url = f"{self.config.document_url.rstrip('/')}/{programme_id}{project_id}"
        response = await self._get(url, {"apiKey": self.config.document_api_key}, what=f"project {project_id}")
        return parse_project_document(response.content)

    async def _get(self, url: str, params: dict[str, str], *, what: str) -> httpx.Response:
        config = self.config
        last_error = ""
        for attempt in range(1, config.max_attempts + 1):
            retry_after: float | None = None
            self.requests_made += 1
            try:
                response = await self._client.get(url, params=params, timeout=config.timeout_s)
            except httpx.TimeoutException as exc:
                last_error = f"timeout after {config.timeout_s}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"connection error ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status == 429 or status >= 500:
                    last_error = f"HTTP {status}"
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    raise PortalRejected(f"portal refused {what}: HTTP {status} {response.text[:200]!r}", status=status)
            if attempt == config.max_attempts:
                break
            delay = backoff_delay(attempt, config, retry_after)
            self.retries += 1
            log.warning(
                "portal %s attempt %d/%d failed: %s; retrying in %.2fs",
                what,
                attempt,
                config.max_attempts,
                last_error,
                delay,
            )
            await self._sleep(delay)
        raise PortalUnavailable(
            f"portal unavailable for {what}: {config.max_attempts} attempts failed, last error: {last_error}",
            attempts=config.max_attempts,
            last_error=last_error,
        )
