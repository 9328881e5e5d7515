"""The portal client against the replay server: request shape, parsing, retries and their limits."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from services.registry.importer.formats import FormatError
from services.registry.importer.portal import (
    FundingPortal,
    PortalConfig,
    PortalRejected,
    PortalUnavailable,
    backoff_delay,
    retry_after_seconds,
)
from services.registry.replay.server import ReplayServer
from tests.unit.registry.conftest import ARDENNE, SleepRecorder


async def test_topic_projects_request_and_rows(replay: ReplayServer, portal: FundingPortal) -> None:
    rows = await portal.fetch_topic_projects("90002201")
    assert [(r.programme_id, r.project_id, r.acronym) for r in rows] == [
        ("44181033", "199000101", "QUANTNAV"),
        ("44181033", "199000102", "MAGSENSE"),
    ]
    (request,) = replay.state.requests
    assert request.path == "/opportunities/api/topicProjectsList.json"
    assert request.params == {"topicId": "90002201"}


async def test_unknown_topic_has_no_projects(portal: FundingPortal) -> None:
    assert await portal.fetch_topic_projects("12345678") == []


async def test_project_document_request_and_participants(replay: ReplayServer, portal: FundingPortal) -> None:
    document = await portal.fetch_project_participants("44181033", "199000101")
    assert [p.pic for p in document.participants] == [ARDENNE, "990000028", "990000035", "990000042"]
    assert [p.role for p in document.participants] == ["coordinator", "participant", "participant", "third_party"]
    assert document.start_date is not None and document.start_date.year == 2023
    assert len(document.objective) > 1200
    (request,) = replay.state.requests
    assert request.path == "/search-api/prod/rest/document/44181033199000101"
    assert request.params == {"apiKey": "SEDIA_NONH2020_PROD"}


async def test_5xx_then_success_is_retried_with_growing_backoff(
    replay: ReplayServer, portal: FundingPortal, sleeps: SleepRecorder
) -> None:
    replay.state.fail_next(2, status=500)
    assert len(await portal.fetch_topic_projects("90002201")) == 2
    assert [r.status for r in replay.state.requests] == [500, 500, 200]
    assert len(sleeps.delays) == 2
    assert 0.005 <= sleeps.delays[0] <= 0.01
    assert 0.01 <= sleeps.delays[1] <= 0.02
    assert portal.retries == 2


async def test_429_honours_retry_after(replay: ReplayServer, portal: FundingPortal, sleeps: SleepRecorder) -> None:
    replay.state.fail_next(1, status=429, retry_after="7", route="documents")
    document = await portal.fetch_project_participants("44181033", "199000102")
    assert len(document.participants) == 4
    assert sleeps.delays == [7.0]


async def test_retry_after_is_capped(replay: ReplayServer, config: PortalConfig, sleeps: SleepRecorder) -> None:
    replay.state.fail_next(1, status=503, retry_after="3600")
    async with FundingPortal(replace(config, retry_after_max_s=5), sleep=sleeps) as portal:
        await portal.fetch_topic_projects("90002201")
    assert sleeps.delays == [5.0]


async def test_persistent_5xx_gives_up_after_max_attempts(
    replay: ReplayServer, portal: FundingPortal, sleeps: SleepRecorder
) -> None:
    replay.state.fail_next(10, status=502)
    with pytest.raises(PortalUnavailable, match="HTTP 502") as info:
        await portal.fetch_topic_projects("90002201")
    assert info.value.attempts == 3
    assert len(replay.state.requests) == 3
    assert len(sleeps.delays) == 2


async def test_persistent_429_gives_up_too(replay: ReplayServer, portal: FundingPortal) -> None:
    replay.state.fail_next(10, status=429, route="documents")
    with pytest.raises(PortalUnavailable, match="HTTP 429"):
        await portal.fetch_project_participants("44181033", "199000101")


async def test_timeouts_are_retried_then_unavailable(replay: ReplayServer, config: PortalConfig) -> None:
    replay.state.hang_next(3, seconds=10)
    started = time.monotonic()
    async with FundingPortal(replace(config, timeout_s=0.2, backoff_base_s=0.001)) as portal:
        with pytest.raises(PortalUnavailable, match="timeout"):
            await portal.fetch_topic_projects("90002201")
    assert time.monotonic() - started < 3
    assert len(replay.state.requests) == 3


async def test_one_timeout_then_success(replay: ReplayServer, config: PortalConfig, sleeps: SleepRecorder) -> None:
    replay.state.hang_next(1, seconds=10)
    async with FundingPortal(replace(config, timeout_s=0.2), sleep=sleeps) as portal:
        assert len(await portal.fetch_topic_projects("90002201")) == 2
    assert [r.fault for r in replay.state.requests] == ["hang", None]


async def test_dropped_connection_is_retried(
    replay: ReplayServer, portal: FundingPortal, sleeps: SleepRecorder
) -> None:
    replay.state.reset_next(1)
    assert len(await portal.fetch_topic_projects("90002201")) == 2
    assert len(sleeps.delays) == 1


async def test_unknown_project_is_rejected_without_retry(portal: FundingPortal, sleeps: SleepRecorder) -> None:
    with pytest.raises(PortalRejected, match="404") as info:
        await portal.fetch_project_participants("44181033", "100000000")
    assert info.value.status == 404
    assert sleeps.delays == []


async def test_wrong_api_key_is_rejected(config: PortalConfig, sleeps: SleepRecorder) -> None:
    async with FundingPortal(replace(config, document_api_key="SEDIA"), sleep=sleeps) as portal:
        with pytest.raises(PortalRejected, match="403"):
            await portal.fetch_project_participants("44181033", "199000101")
    assert sleeps.delays == []


async def test_malformed_answer_is_a_format_error(replay: ReplayServer, portal: FundingPortal) -> None:
    topics = replay.state.topics
    topics[0]["projects"][0]["participants"] = ["[{broken"]
    replay.state.set_topics(topics)
    with pytest.raises(FormatError, match="not a JSON string"):
        await portal.fetch_project_participants("44181033", "199000101")


async def test_no_server_is_unavailable(sleeps: SleepRecorder) -> None:
    with ReplayServer() as server:
        config = PortalConfig(projects_url=server.projects_url, max_attempts=2, backoff_base_s=0.001, timeout_s=1)
    async with FundingPortal(config, sleep=sleeps) as portal:
        with pytest.raises(PortalUnavailable, match="connection error"):
            await portal.fetch_topic_projects("90002201")


async def test_injected_client_is_used_and_left_open(config: PortalConfig) -> None:
    async with httpx.AsyncClient() as client:
        async with FundingPortal(config, client=client) as portal:
            assert len(await portal.fetch_topic_projects("90002201")) == 2
        assert not client.is_closed


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_stays_within_bounds() -> None:
    config = PortalConfig(backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt in range(1, 10):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= backoff_delay(attempt, config) <= ceiling
