"""Async client for the EU Funding & Tenders Portal search API (SEDIA), reading EDF topics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.calls.domain.normalise import (
    STATUS_CODE,
    CallStatus,
    NormalisedCall,
    RowError,
    merge_rows,
    normalise_row,
)
from services.calls.domain.taxonomy import Taxonomy, load_taxonomy
from shared import http_retry
from shared.http_retry import RetryPolicy, Sleep
from shared.http_retry import retry_after_seconds as retry_after_seconds  # re-exported

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.tech.ec.europa.eu/search-api/prod/rest/search"
EDF_FRAMEWORK_PROGRAMME = "44181033"
TOPIC_TYPE = "1"
MAX_BAD_PAGES_IN_A_ROW = 3


class PortalUnavailable(http_retry.RetryError):
    """The portal could not be read: retries exhausted or the request was refused."""


class PortalRejected(PortalUnavailable):
    """The portal answered a 4xx other than 429: retrying the same request cannot help."""


@dataclass(frozen=True)
class PortalConfig:
    """Where and how to poll; the service fills this from its settings."""

    endpoint: str = DEFAULT_ENDPOINT
    api_key: str = "SEDIA"
    # Closed topics too: a closure is then the portal's own word ("closed on the portal"); a topic that
    # disappears from a complete poll altogether (withdrawn) closes as no longer listed.
    statuses: tuple[CallStatus, ...] = ("forthcoming", "open", "closed")
    framework_programme: str = EDF_FRAMEWORK_PROGRAMME
    page_size: int = 100
    max_pages: int = 100
    max_restarts: int = 3
    """How often a poll starts again from page 1 when totalResults changes between pages."""
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base_s, self.backoff_max_s, self.retry_after_max_s)


@dataclass
class PollResult:
    """Topics read in one poll, and how much of the portal's listing they cover.

    ``listing_complete``: every page was read, the rows add up to the announced total, and every row
    named its topic — so a stored topic missing from ``listed`` is really no longer listed.
    ``complete``: that, and every listed topic was parsed from at least one of its rows. Rows that
    could not be parsed are counted in ``unparseable_rows`` and described in ``problems``.
    """

    topics: list[NormalisedCall]
    listed: set[str]
    listing_complete: bool
    problems: list[str] = field(default_factory=list)
    unparseable_rows: int = 0
    total_results: int | None = None
    pages_read: int = 0
    rows_read: int = 0
    restarts: int = 0

    @property
    def unparsed_ids(self) -> set[str]:
        """Listed topics none of whose rows could be parsed: known to exist, but not what they say."""
        return self.listed - {t.id for t in self.topics}

    @property
    def complete(self) -> bool:
        return self.listing_complete and not self.unparsed_ids


def build_query(config: PortalConfig) -> dict[str, Any]:
    """The bool/must/terms query, the only shape the search API honours."""
    return {
        "bool": {
            "must": [
                {"terms": {"type": [TOPIC_TYPE]}},
                {"terms": {"status": [STATUS_CODE[s] for s in config.statuses]}},
                {"terms": {"frameworkProgramme": [config.framework_programme]}},
            ]
        }
    }


def build_files(config: PortalConfig) -> dict[str, tuple[str, bytes, str]]:
    """query, languages and sort as multipart file parts: as form fields the API answers 500."""

    def part(value: Any) -> tuple[str, bytes, str]:
        return ("blob", json.dumps(value, separators=(",", ":")).encode(), "application/json")

    return {
        "query": part(build_query(config)),
        "languages": part(["en"]),
        # Identifier order keeps pages stable while we walk through them.
        "sort": part({"field": "identifier", "order": "ASC"}),
    }


def backoff_delay(attempt: int, config: PortalConfig, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter for the given failed attempt (1-based); Retry-After is a floor."""
    return http_retry.backoff_delay(attempt, config.retry_policy, retry_after)


async def _post_page(client: httpx.AsyncClient, config: PortalConfig, page: int, sleep: Sleep) -> httpx.Response:
    """POST one page, retrying transient failures; raises PortalUnavailable when they persist."""
    params = {
        "apiKey": config.api_key,
        "text": "***",
        "pageSize": str(config.page_size),
        "pageNumber": str(page),
    }
    try:
        return await http_retry.request_with_retries(
            client,
            "POST",
            config.endpoint,
            policy=config.retry_policy,
            sleep=sleep,
            timeout=config.timeout_s,
            label=f"portal page {page}",
            logger=log,
            params=params,
            files=build_files(config),
        )
    except http_retry.RequestRejected as exc:
        raise PortalRejected(
            f"portal refused page {page}: HTTP {exc.status} {exc.response.text[:200]!r}",
            attempts=exc.attempts,
            last_error=exc.last_error,
        ) from exc
    except http_retry.RetriesExhausted as exc:
        raise PortalUnavailable(
            f"portal unavailable: page {page} failed {exc.attempts} times, last error: {exc.last_error}",
            attempts=exc.attempts,
            last_error=exc.last_error,
        ) from exc


@dataclass
class _Page:
    rows: list[NormalisedCall]
    listed: set[str]
    raw_count: int
    total: int | None
    page_size: int | None
    row_problems: list[str]
    """Rows that name their topic but cannot be parsed."""
    unnamed_rows: list[str]
    """Rows that do not even name their topic."""


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_page(body: bytes | str, page: int, taxonomy: Taxonomy) -> _Page:
    """Decode one search page; a broken page raises ValueError, a broken row becomes a problem."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    results = data.get("results")
    if not isinstance(results, list):
        raise ValueError("missing 'results' array")
    parsed = _Page([], set(), len(results), _positive_int(data.get("totalResults")), None, [], [])
    parsed.page_size = _positive_int(data.get("pageSize")) or None
    for index, raw in enumerate(results):
        try:
            call = normalise_row(raw, taxonomy)
        except RowError as exc:
            problem = f"page {page} row {index}: skipped: {exc}"
            if exc.identifier is None:
                parsed.unnamed_rows.append(problem)
            else:
                parsed.listed.add(exc.identifier)
                parsed.row_problems.append(problem)
            continue
        parsed.rows.append(call)
        parsed.listed.add(call.id)
    return parsed


async def fetch_edf_topics(
    config: PortalConfig | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    taxonomy: Taxonomy | None = None,
    sleep: Sleep = asyncio.sleep,
) -> PollResult:
    """Read every page of EDF topics and merge rows per topic.

    Transient failures are retried and end in PortalUnavailable. When ``totalResults`` changes
    between pages (the portal's index moved while we paged), the poll starts again from page 1, at
    most ``config.max_restarts`` times. Malformed pages and rows are skipped and reported.
    """
    config = config or PortalConfig()
    tax = taxonomy or load_taxonomy()
    if client is None:
        async with httpx.AsyncClient() as own_client:
            return await _fetch(own_client, config, tax, sleep)
    return await _fetch(client, config, tax, sleep)


@dataclass
class _Pass:
    """One walk through the pages, from page 1."""

    rows: list[NormalisedCall] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    listing_problems: list[str] = field(default_factory=list)
    row_problems: list[str] = field(default_factory=list)
    total: int | None = None
    pages_read: int = 0
    rows_read: int = 0
    shifted: str | None = None
    """Set when the pass stopped because totalResults changed: it must start again."""


async def _fetch(client: httpx.AsyncClient, config: PortalConfig, tax: Taxonomy, sleep: Sleep) -> PollResult:
    restarts = pages_read = 0
    while True:
        walk = await _walk(client, config, tax, sleep, restarts=restarts)
        pages_read += walk.pages_read
        if walk.shifted is None:
            break
        restarts += 1
        log.info("portal %s; reading again from page 1 (restart %d of %d)", walk.shifted, restarts, config.max_restarts)
    for problem in walk.listing_problems + walk.row_problems:
        log.warning("portal %s", problem)
    return PollResult(
        topics=merge_rows(walk.rows, tax),
        listed=walk.listed,
        listing_complete=not walk.listing_problems,
        problems=walk.listing_problems + walk.row_problems,
        unparseable_rows=len(walk.row_problems),
        total_results=walk.total,
        pages_read=pages_read,
        rows_read=walk.rows_read,
        restarts=restarts,
    )


async def _walk(
    client: httpx.AsyncClient, config: PortalConfig, tax: Taxonomy, sleep: Sleep, *, restarts: int
) -> _Pass:
    """Read the pages once; stop early (``shifted``) when the total changes and a restart is left."""
    walk = _Pass()
    page_size = config.page_size
    pages_skipped = 0
    bad_in_a_row = 0
    page = 1
    while True:
        if page > config.max_pages:
            walk.listing_problems.append(f"stopped after {config.max_pages} pages (totalResults={walk.total})")
            break
        response = await _post_page(client, config, page, sleep)
        walk.pages_read += 1
        try:
            parsed = parse_page(response.content, page, tax)
        except ValueError as exc:
            walk.listing_problems.append(f"page {page}: skipped: {exc}")
            pages_skipped += 1
            bad_in_a_row += 1
            # Go on while the last known total says there is more; without any total, give up after a
            # few broken pages in a row rather than walking max_pages of an error page.
            if walk.total is not None and page * page_size >= walk.total:
                break
            if walk.total is None and bad_in_a_row >= MAX_BAD_PAGES_IN_A_ROW:
                walk.listing_problems.append(f"gave up after {bad_in_a_row} malformed pages in a row")
                break
            page += 1
            continue
        bad_in_a_row = 0
        if parsed.total is not None and walk.total is not None and parsed.total != walk.total:
            # Rows shifted between pages while we read them: some may have been missed or read twice.
            change = f"page {page}: totalResults changed from {walk.total} to {parsed.total}"
            if restarts < config.max_restarts:
                walk.shifted = change
                return walk
            walk.listing_problems.append(f"{change}, still after {restarts} restarts from page 1")
        walk.total = parsed.total if parsed.total is not None else walk.total
        walk.rows.extend(parsed.rows)
        walk.listed |= parsed.listed
        walk.row_problems.extend(parsed.row_problems)
        # A row that names no topic could be the only row of a listed one: the listing is not known whole.
        walk.listing_problems.extend(parsed.unnamed_rows)
        walk.rows_read += parsed.raw_count
        # The API may cap pageSize below what we asked; page numbers follow its size, not ours.
        page_size = parsed.page_size or page_size
        if parsed.raw_count == 0 or (walk.total is not None and page * page_size >= walk.total):
            break
        page += 1
    if walk.total is not None and not pages_skipped and walk.rows_read < walk.total:
        walk.listing_problems.append(f"read {walk.rows_read} rows of {walk.total} announced")
    return walk
