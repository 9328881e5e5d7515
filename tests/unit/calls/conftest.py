"""Fixtures for the call watcher domain tests: row builder, replay server, fast portal config."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The project is not necessarily pip-installed; make `services` importable from the repo root.
ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.calls.domain.portal import PortalConfig  # noqa: E402
from services.calls.replay.server import DEFAULT_DATA, ReplayServer, load_rows, run_replay_server  # noqa: E402

RowFactory = Callable[..., dict[str, Any]]


def _row(
    identifier: str = "EDF-2026-RA-MCBRN-TEST",
    *,
    status: str = "31094502",
    title: str = "Test topic",
    description: str = "<p>Plain description.</p>",
    deadlines: tuple[str, ...] = ("2027-02-18T00:00:00.000+0000",),
    start: str | None = "2026-06-17T00:00:00.000+0000",
    ccm2: str = "90000001",
    budget: dict[str, Any] | None = None,
    actions: list[dict[str, Any]] | None = None,
    keywords: tuple[str, ...] = (),
    **metadata: list[str],
) -> dict[str, Any]:
    """A search result row in the portal's format; every metadata value is an array of strings."""
    meta: dict[str, list[str]] = {
        "identifier": [identifier],
        "title": [title],
        "callIdentifier": ["-".join(identifier.split("-")[:3])],
        "callTitle": ["A test call"],
        "ccm2Id": [ccm2],
        "frameworkProgramme": ["44181033"],
        "type": ["1"],
        "status": [status],
        "deadlineDate": list(deadlines),
        "deadlineModel": ["two-stage" if len(deadlines) > 1 else "single-stage"],
        "keywords": list(keywords),
        "descriptionByte": [description],
    }
    if start is not None:
        meta["startDate"] = [start]
    if budget is not None:
        meta["budgetOverview"] = [json.dumps(budget)]
    if actions is not None:
        meta["actions"] = [json.dumps(actions)]
    meta.update(metadata)
    return {
        "reference": f"{ccm2}TOPICSen",
        "url": "https://example.invalid/topic.json",
        "summary": title,
        "checksum": "0",
        "metadata": meta,
    }


@pytest.fixture
def make_row() -> RowFactory:
    """Build a portal row; keyword arguments override fields or add metadata arrays."""
    return _row


@pytest.fixture
def data_rows() -> list[dict[str, Any]]:
    """The replay data set shipped with the service."""
    return load_rows(DEFAULT_DATA)


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A replay server with the default data on a free port."""
    with run_replay_server() as server:
        yield server


class SleepRecorder:
    """Stands in for asyncio.sleep: records delays, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> SleepRecorder:
    """A sleep function that records the backoff delays."""
    return SleepRecorder()


@pytest.fixture
def config(replay: ReplayServer) -> PortalConfig:
    """Portal config pointed at the replay server, with short timeouts and tiny backoff."""
    return PortalConfig(endpoint=replay.endpoint, page_size=100, timeout_s=2.0, max_attempts=3, backoff_base_s=0.01)
