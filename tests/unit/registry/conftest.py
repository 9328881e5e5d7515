"""Fixtures for the project-history importer: replay server, fast portal config, raw-format builders."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The project is not necessarily pip-installed; make `services` importable from the repo root.
ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.registry.importer.portal import FundingPortal, PortalConfig  # noqa: E402
from services.registry.models import Company  # noqa: E402
from services.registry.replay.server import ReplayServer, run_replay_server  # noqa: E402
from shared.consumer import InboxRecord  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.outbox import OutboxRecord, UnitOfWorkFactory  # noqa: E402

# The default replay data (services/registry/replay/data/edf_projects.json).
TOPICS = "EDF-2022-RA-SENS-QPNT:90002201,EDF-2023-DA-NAVAL-USVX:90002302,EDF-2021-SPACE-D-SSAX:90002104"
EMPTY_TOPIC = "EDF-2024-RA-CYBER-FICT:90002403"
ARDENNE = "990000011"  # QUANTNAV coordinator, MAGSENSE and ORBITWATCH participant
SCHELDT = "990000066"  # MAGSENSE associated partner, SEAWARD coordinator


class SleepRecorder:
    """Stands in for asyncio.sleep: records delays, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A replay server with the default data on a free port."""
    with run_replay_server() as server:
        yield server


@pytest.fixture
def config(replay: ReplayServer) -> PortalConfig:
    """Portal config pointed at the replay, with short timeouts and tiny backoff."""
    return PortalConfig(
        projects_url=replay.projects_url,
        document_url=replay.document_url,
        timeout_s=2.0,
        max_attempts=3,
        backoff_base_s=0.01,
    )


@pytest.fixture
async def portal(config: PortalConfig, sleeps: SleepRecorder) -> AsyncIterator[FundingPortal]:
    async with FundingPortal(config, sleep=sleeps) as client:
        yield client


@pytest.fixture
async def registry_db(tmp_path: Path) -> AsyncIterator[Database]:
    """The registry's tables in a throw-away SQLite file (the service's embedded default)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}", tables=[OutboxRecord, InboxRecord, Company])
    await db.create_tables()
    yield db
    await db.dispose()


@pytest.fixture
def uow(registry_db: Database) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(registry_db, source="registry")


def raw_participant(pic: Any, name: str, role: str = "participant", order: Any = 1, **extra: Any) -> dict[str, Any]:
    """A participant as the document endpoint lists it (inside the participants JSON string)."""
    return {
        "pic": pic,
        "legalName": name,
        "role": role,
        "order": order,
        "status": "Active",
        "activityType": "Private for profit organisation",
        "organizationType": "",
        "type": "PRC",
        "sme": False,
        "postalAddress": {"countryCode": {"abbreviation": "BE", "description": "Belgium"}, "city": "Gent"},
        "webLink": "",
        "eucontribution": "1000.00",
        **extra,
    }


def raw_document(participants: list[str] | None = None, **metadata: Any) -> dict[str, Any]:
    """A search-api document: metadata values are arrays of strings; participants JSON strings."""
    meta: dict[str, Any] = {
        "status": ["Ongoing"],
        "startDate": ["2024-12-01T00:00:00.000+0100"],
        "endDate": ["2027-11-30T00:00:00.000+0100"],
        "overallBudget": ["5560880.31"],
        "euContributionAmount": ["3299977.25"],
        "objective": ["Builds a thing."],
        "typeOfAction": ["EDF Development Actions"],
        "participants": participants if participants is not None else ["[]"],
    }
    meta.update(metadata)
    return {"reference": "44181033199000999", "metadata": meta}


@pytest.fixture
def participants_json() -> Callable[..., str]:
    def make(*rows: dict[str, Any]) -> str:
        return json.dumps(list(rows))

    return make
