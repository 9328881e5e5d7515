"""The call watcher keeps noticing closed calls, whatever single rows the portal gets wrong.

Real broker and PostgreSQL, the SEDIA replay serving rows in the recorded portal format. A poll is
complete when every page was read and every identifier was parsed from at least one of its rows;
rows that cannot be parsed are reported and never stop other topics from closing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.calls.replay.server import ReplayServer
from shared.events.calls import CallClosed
from shared.settings import KafkaSettings
from tests.infra import Databases
from tests.integration.test_calls_service import ROWS, TOPIC_IDS, _event, _poll, _records, calls_service, replay

pytestmark = pytest.mark.infra
__all__ = ["replay"]  # the fixture, shared with test_calls_service

DUPLICATED = "EDF-2026-RA-CYBER-AICD"
GONE = "EDF-2026-RA-SENS-QMAG"


def _rows_of(identifier: str) -> list[dict[str, Any]]:
    return [r for r in ROWS if r["metadata"]["identifier"] == [identifier]]


def _thin_duplicate(identifier: str) -> dict[str, Any]:
    """A second row of a known topic that carries little more than its identifier: no status, no title."""
    (row,) = _rows_of(identifier)
    thin = copy.deepcopy(row)
    thin["reference"] += "_1"
    for field in ("status", "title", "actions", "budgetOverview", "descriptionByte"):
        thin["metadata"].pop(field, None)
    return thin


def _without(*identifiers: str) -> list[dict[str, Any]]:
    return [r for r in ROWS if r["metadata"]["identifier"][0] not in identifiers]


async def test_a_thin_duplicate_row_without_status_does_not_stop_vanished_topics_from_closing(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        replay.state.set_rows([*_without(GONE), _thin_duplicate(DUPLICATED)])
        for _ in range(2):  # every poll, not just once
            polled = await _poll(client)
            assert polled["complete"] is True, polled["problems"]
            assert polled["unparseable_rows"] == 1
            assert any(DUPLICATED in p and "status" in p for p in polled["problems"])
            if polled["closed"]:
                assert polled["closed"] == 1
        assert (await client.get(f"/calls/{GONE}")).json()["status"] == "closed"
        assert (await client.get(f"/calls/{DUPLICATED}")).json()["status"] == "open"
        health = (await client.get("/healthz")).json()
        assert health["poller"]["unparseable_rows"] == 1 and health["poller"]["complete"] is True
        closes = [e for e in map(_event, await _records(kafka_settings, expect=len(TOPIC_IDS) + 1))]
        assert [(e.subject, e.data["reason"]) for e in closes if e.type == CallClosed.event_type] == [
            (GONE, "no longer listed on the portal")
        ]


async def test_a_topic_whose_only_row_cannot_be_parsed_stays_as_it_was_and_others_still_close(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        before = (await client.get(f"/calls/{DUPLICATED}")).json()
        (broken,) = copy.deepcopy(_rows_of(DUPLICATED))
        broken["metadata"]["deadlineDate"] = ["the twelfth of never"]
        replay.state.set_rows([*_without(GONE, DUPLICATED), broken])
        polled = await _poll(client)
        # Not complete (that topic is known only by name), yet it was listed: it neither vanishes nor
        # changes, and the topic that really vanished closes.
        assert polled["closed"] == 1 and polled["complete"] is False
        assert polled["unparseable_rows"] == 1
        assert any(DUPLICATED in p and "date" in p for p in polled["problems"])
        assert (await client.get(f"/calls/{DUPLICATED}")).json() == before
        assert (await client.get(f"/calls/{GONE}")).json()["status"] == "closed"


async def test_a_topic_the_portal_reports_closed_closes_on_the_portals_word(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        rows = copy.deepcopy(ROWS)
        for row in rows:
            if row["metadata"]["identifier"] == [GONE]:
                row["metadata"]["status"] = ["31094503"]
        replay.state.set_rows(rows)
        polled = await _poll(client)
        assert polled["complete"] is True and polled["closed"] == 1
        closes = [e for e in map(_event, await _records(kafka_settings, expect=len(TOPIC_IDS) + 1))]
        assert [(e.subject, e.data["reason"]) for e in closes if e.type == CallClosed.event_type] == [
            (GONE, "closed on the portal")
        ]


async def test_results_that_shift_while_paging_restart_the_poll_from_the_first_page(
    databases: Databases, kafka_settings: KafkaSettings, replay: ReplayServer
) -> None:
    async with calls_service(databases, kafka_settings, replay) as (client, _):
        await _poll(client)
        # While page 1 is read, GONE disappears from the portal: page 2 announces a smaller total.
        replay.state.set_rows(ROWS)
        replay.state.change_rows_after_page(1, [_without(GONE)])
        replay.state.clear_requests()
        polled = await _poll(client)
        assert polled["complete"] is True and polled["restarts"] == 1
        assert polled["closed"] == 1
        assert [r.params["pageNumber"] for r in replay.state.requests][:3] == ["1", "2", "1"]
        assert (await client.get(f"/calls/{GONE}")).json()["status"] == "closed"
