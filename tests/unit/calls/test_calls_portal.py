"""The portal client against the replay server: request shape, paging, retries, partial polls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from services.calls.domain.portal import (
    PortalConfig,
    PortalRejected,
    PortalUnavailable,
    backoff_delay,
    fetch_edf_topics,
    retry_after_seconds,
)
from services.calls.replay.server import ReplayServer

RowFactory = Callable[..., dict[str, Any]]
ALL_IDS = [
    "EDF-2026-DA-NAVAL-MCMS",
    "EDF-2026-DA-SPACE-SSAS",
    "EDF-2026-LS-RA-DIS-NT",
    "EDF-2026-RA-CYBER-AICD",
    "EDF-2026-RA-MCBRN-RDBT",
    "EDF-2026-RA-SENS-QMAG",
]


async def test_request_shape(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    result = await fetch_edf_topics(config, sleep=sleeps)
    assert result.complete, result.problems
    (request,) = replay.state.requests
    assert request.params == {"apiKey": "SEDIA", "text": "***", "pageSize": "100", "pageNumber": "1"}
    assert request.content_type.startswith("multipart/form-data")
    assert set(request.parts) == {"query", "languages", "sort"}
    assert all(p.content_type == "application/json" and p.filename for p in request.parts.values())
    assert json.loads(request.parts["query"].body) == {
        "bool": {
            "must": [
                {"terms": {"type": ["1"]}},
                {"terms": {"status": ["31094501", "31094502", "31094503"]}},
                {"terms": {"frameworkProgramme": ["44181033"]}},
            ]
        }
    }
    assert json.loads(request.parts["languages"].body) == ["en"]
    assert json.loads(request.parts["sort"].body) == {"field": "identifier", "order": "ASC"}
    assert sleeps.delays == []


async def test_reads_all_pages(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    result = await fetch_edf_topics(replace(config, page_size=2), sleep=sleeps)
    assert result.complete, result.problems
    assert [t.id for t in result.topics] == ALL_IDS
    assert result.total_results == 7
    assert result.rows_read == 7
    assert [r.params["pageNumber"] for r in replay.state.requests] == ["1", "2", "3", "4"]


async def test_exact_multiple_of_page_size_stops(
    replay: ReplayServer, config: PortalConfig, make_row: RowFactory
) -> None:
    replay.state.set_rows([make_row(f"EDF-2026-RA-CYBER-T{i}", ccm2=str(i)) for i in range(4)])
    result = await fetch_edf_topics(replace(config, page_size=2))
    assert result.complete
    assert len(result.topics) == 4
    assert len(replay.state.requests) == 2  # no extra empty page needed


async def test_empty_result(replay: ReplayServer, config: PortalConfig) -> None:
    replay.state.set_rows([])
    result = await fetch_edf_topics(config)
    assert result.complete
    assert result.topics == []
    assert result.total_results == 0


async def test_status_filter_is_sent(replay: ReplayServer, config: PortalConfig) -> None:
    open_only = await fetch_edf_topics(replace(config, statuses=("open",)))
    assert {t.status for t in open_only.topics} == {"open"}
    assert len(open_only.topics) == 4
    closed = await fetch_edf_topics(replace(config, statuses=("closed",)))
    assert closed.topics == []


async def test_duplicate_rows_are_merged(replay: ReplayServer, config: PortalConfig) -> None:
    result = await fetch_edf_topics(replace(config, page_size=3))
    dis = [t for t in result.topics if t.id == "EDF-2026-LS-RA-DIS-NT"]
    assert len(dis) == 1
    assert dis[0].budget_eur == 32_000_000


async def test_5xx_then_success_is_retried(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    replay.state.fail_next(2, status=503)
    result = await fetch_edf_topics(config, sleep=sleeps)
    assert result.complete
    assert len(result.topics) == 6
    assert [r.status for r in replay.state.requests] == [503, 503, 200]
    assert len(sleeps.delays) == 2
    # Exponential: the second wait is drawn from a range twice as large as the first.
    assert 0.005 <= sleeps.delays[0] <= 0.01
    assert 0.01 <= sleeps.delays[1] <= 0.02


async def test_429_honours_retry_after(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    replay.state.fail_next(1, status=429, retry_after="7")
    result = await fetch_edf_topics(config, sleep=sleeps)
    assert result.complete
    assert sleeps.delays == [7.0]


async def test_persistent_5xx_raises_portal_unavailable(
    replay: ReplayServer, config: PortalConfig, sleeps: Any
) -> None:
    replay.state.fail_next(10, status=500)
    with pytest.raises(PortalUnavailable, match="HTTP 500") as info:
        await fetch_edf_topics(config, sleep=sleeps)
    assert info.value.attempts == 3
    assert len(replay.state.requests) == 3
    assert len(sleeps.delays) == 2


async def test_hanging_server_times_out_then_unavailable(replay: ReplayServer, config: PortalConfig) -> None:
    replay.state.hang_next(3, seconds=10)
    started = time.monotonic()
    with pytest.raises(PortalUnavailable, match="timeout"):
        await fetch_edf_topics(replace(config, timeout_s=0.2, backoff_base_s=0.001))
    assert time.monotonic() - started < 3
    assert len(replay.state.requests) == 3


async def test_one_hang_then_success(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    replay.state.hang_next(1, seconds=10)
    result = await fetch_edf_topics(replace(config, timeout_s=0.2), sleep=sleeps)
    assert result.complete
    assert len(result.topics) == 6
    assert [r.fault for r in replay.state.requests] == ["hang", None]


async def test_dropped_connection_is_retried(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    replay.state.reset_next(1)
    result = await fetch_edf_topics(config, sleep=sleeps)
    assert result.complete
    assert len(sleeps.delays) == 1


async def test_no_server_is_unavailable(sleeps: Any) -> None:
    with ReplayServer() as server:
        endpoint = server.endpoint
    config = PortalConfig(endpoint=endpoint, max_attempts=2, backoff_base_s=0.001, timeout_s=1)
    with pytest.raises(PortalUnavailable, match="connection error"):
        await fetch_edf_topics(config, sleep=sleeps)


async def test_4xx_is_not_retried(replay: ReplayServer, config: PortalConfig, sleeps: Any) -> None:
    replay.state.fail_next(1, status=403)
    with pytest.raises(PortalRejected, match="403"):
        await fetch_edf_topics(config, sleep=sleeps)
    assert sleeps.delays == []


@pytest.mark.parametrize("mode", ["not-json", "missing-results"])
async def test_malformed_page_is_skipped(replay: ReplayServer, config: PortalConfig, mode: Any) -> None:
    replay.state.malform_page(2, mode)
    result = await fetch_edf_topics(replace(config, page_size=2))
    assert not result.complete
    assert len(result.problems) == 1
    assert result.problems[0].startswith("page 2: skipped")
    # Pages 1, 3 and 4 are kept; page 2 held both rows of the duplicated topic.
    assert [t.id for t in result.topics] == [i for i in ALL_IDS if i != "EDF-2026-LS-RA-DIS-NT"]
    assert len(replay.state.requests) == 4


async def test_malformed_first_page_still_reads_the_rest(replay: ReplayServer, config: PortalConfig) -> None:
    replay.state.malform_page(1, "not-json")
    result = await fetch_edf_topics(replace(config, page_size=4))
    assert not result.complete
    assert {t.id for t in result.topics} == {
        "EDF-2026-RA-CYBER-AICD",
        "EDF-2026-RA-MCBRN-RDBT",
        "EDF-2026-RA-SENS-QMAG",
    }


async def test_bad_row_is_skipped_rest_of_page_kept(replay: ReplayServer, config: PortalConfig) -> None:
    replay.state.malform_page(1, "bad-row")
    result = await fetch_edf_topics(config)
    assert not result.complete
    assert len(result.problems) == 1
    assert "row 0" in result.problems[0] and "no identifier" in result.problems[0]
    assert [t.id for t in result.topics] == ALL_IDS[1:]


async def test_injected_client_is_used(replay: ReplayServer, config: PortalConfig) -> None:
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as client:
        result = await fetch_edf_topics(config, client=client)
        assert not client.is_closed  # the caller's client stays open
    assert result.complete
    assert len(seen) == 1


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("garbage") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_grows_and_is_capped() -> None:
    config = PortalConfig(backoff_base_s=1.0, backoff_max_s=8.0, retry_after_max_s=30.0)
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)], start=1):
        assert low <= backoff_delay(attempt, config) <= high
    assert backoff_delay(1, config, retry_after=12) == 12
    assert backoff_delay(1, config, retry_after=3600) == 30.0


async def test_a_thin_row_without_status_is_reported_and_its_topic_still_counts_as_parsed(
    replay: ReplayServer, config: PortalConfig, make_row: RowFactory
) -> None:
    full = make_row("EDF-2026-RA-CYBER-FULL", ccm2="1")
    thin = make_row("EDF-2026-RA-CYBER-FULL", ccm2="1")
    del thin["metadata"]["status"], thin["metadata"]["title"]
    replay.state.set_rows([full, thin, make_row("EDF-2026-RA-SENS-OTHER", ccm2="2")])
    result = await fetch_edf_topics(replace(config, page_size=2))
    assert result.complete and result.listing_complete
    assert result.unparseable_rows == 1
    assert [t.id for t in result.topics] == ["EDF-2026-RA-CYBER-FULL", "EDF-2026-RA-SENS-OTHER"]
    [problem] = result.problems
    assert "EDF-2026-RA-CYBER-FULL" in problem and "status" in problem


async def test_a_topic_listed_only_by_unparseable_rows_leaves_the_listing_complete_but_the_poll_not(
    replay: ReplayServer, config: PortalConfig, make_row: RowFactory
) -> None:
    broken = make_row("EDF-2026-RA-CYBER-BROKEN", ccm2="1", deadlines=("someday",))
    replay.state.set_rows([broken, make_row("EDF-2026-RA-SENS-OTHER", ccm2="2")])
    result = await fetch_edf_topics(config)
    assert result.listing_complete and not result.complete
    assert result.listed == {"EDF-2026-RA-CYBER-BROKEN", "EDF-2026-RA-SENS-OTHER"}
    assert result.unparsed_ids == {"EDF-2026-RA-CYBER-BROKEN"}
    assert result.unparseable_rows == 1


async def test_a_row_that_names_no_topic_leaves_the_listing_incomplete(
    replay: ReplayServer, config: PortalConfig
) -> None:
    replay.state.malform_page(1, "bad-row")
    result = await fetch_edf_topics(config)
    # That row could be the only row of some topic: nothing may be taken as vanished.
    assert not result.listing_complete
    assert result.unparseable_rows == 0


async def test_a_total_that_changes_between_pages_restarts_from_page_one(
    replay: ReplayServer, config: PortalConfig, make_row: RowFactory
) -> None:
    four = [make_row(f"EDF-2026-RA-CYBER-T{i}", ccm2=str(i)) for i in range(4)]
    replay.state.set_rows(four)
    replay.state.change_rows_after_page(1, [four[1:]])  # T0 leaves the portal while page 1 is read
    result = await fetch_edf_topics(replace(config, page_size=2))
    assert result.complete and result.restarts == 1
    assert [t.id for t in result.topics] == [f"EDF-2026-RA-CYBER-T{i}" for i in range(1, 4)]
    assert [r.params["pageNumber"] for r in replay.state.requests] == ["1", "2", "1", "2"]


async def test_a_total_that_keeps_changing_ends_an_incomplete_poll_after_bounded_restarts(
    replay: ReplayServer, config: PortalConfig, make_row: RowFactory
) -> None:
    four = [make_row(f"EDF-2026-RA-CYBER-T{i}", ccm2=str(i)) for i in range(4)]
    replay.state.set_rows(four)
    replay.state.change_rows_after_page(1, [four[:3], four] * 5)  # shifts on every pass
    result = await fetch_edf_topics(replace(config, page_size=2, max_restarts=2))
    assert result.restarts == 2
    assert not result.listing_complete and not result.complete
    assert any("totalResults changed" in p and "after 2 restarts" in p for p in result.problems)
    assert len(replay.state.requests) == 6  # three passes of two pages, then it stops
