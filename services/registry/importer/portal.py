"""Async client for the two Funding & Tenders Portal endpoints the importer reads.

``fetch_topic_projects`` lists a topic's funded projects (``topicProjectsList.json``);
``fetch_project_participants`` reads one project's search-api document (details and consortium).
Timeouts, connection errors, HTTP 429 and 5xx are retried a bounded number of times with exponential
backoff and jitter (``Retry-After`` is honoured, capped; see :mod:`shared.http_retry`); other 4xx
answers are final. Formats: see
:mod:`services.registry.importer.formats`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
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
from shared import http_retry
from shared.http_retry import RetryPolicy, Sleep
from shared.http_retry import retry_after_seconds as retry_after_seconds  # re-exported

log = logging.getLogger(__name__)

DEFAULT_PROJECTS_URL = "https://ec.europa.eu/info/funding-tenders/opportunities/api/topicProjectsList.json"
DEFAULT_DOCUMENT_URL = "https://api.tech.ec.europa.eu/search-api/prod/rest/document"
DOCUMENT_API_KEY = "SEDIA_NONH2020_PROD"


class PortalError(RuntimeError):
    """A portal request failed for good."""


class PortalUnavailable(PortalError, http_retry.RetryError):
    """Retries exhausted: timeouts, connection errors, 429 or 5xx every time."""


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

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s, self.retry_after_max_s)


def backoff_delay(attempt: int, config: PortalConfig, retry_after: float | None = None) -> float:
    """Equal-jitter exponential backoff after failed attempt ``attempt`` (1-based); Retry-After is a floor."""
    return http_retry.backoff_delay(attempt, config.retry_policy, retry_after)


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
        try:
            return await http_retry.request_with_retries(
                self._client,
                "GET",
                url,
                policy=self.config.retry_policy,
                sleep=self._sleep,
                timeout=self.config.timeout_s,
                label=f"portal {what}",
                logger=log,
                on_attempt=self._count_request,
                on_retry=self._count_retry,
                params=params,
            )
        except http_retry.RequestRejected as exc:
            raise PortalRejected(
                f"portal refused {what}: HTTP {exc.status} {exc.response.text[:200]!r}", status=exc.status
            ) from exc
        except http_retry.RetriesExhausted as exc:
            raise PortalUnavailable(
                f"portal unavailable for {what}: {exc.attempts} attempts failed, last error: {exc.last_error}",
                attempts=exc.attempts,
                last_error=exc.last_error,
            ) from exc

    def _count_request(self, attempt: int) -> None:
        self.requests_made += 1

    def _count_retry(self, attempt: int, last_error: str, delay: float) -> None:
        self.retries += 1
