"""One running platform per e2e module: five service processes on the real broker and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.calls.replay.server import ReplayServer, run_replay_server
from tests.e2e.platform import Platform, start_platform
from tests.infra import Databases, KafkaBroker, topic_prefix


@pytest.fixture(scope="module")
def portal() -> Iterator[ReplayServer]:
    with run_replay_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas() -> int:
    """How many replicas of matching and alerts the module's platform runs (a module may parametrize it)."""
    return 1


@pytest.fixture(scope="module")
def platform(
    kafka_broker: KafkaBroker,
    pg_admin_url: str,
    portal: ReplayServer,
    tmp_path_factory: pytest.TempPathFactory,
    replicas: int,
) -> Iterator[Platform]:
    databases = Databases(pg_admin_url)
    prefix = topic_prefix()
    log_dir: Path = tmp_path_factory.mktemp("platform-logs")
    running = start_platform(
        databases=databases,
        bootstrap=kafka_broker.bootstrap,
        prefix=prefix,
        log_dir=log_dir,
        portal_url=portal.endpoint,
        replicas=replicas,
    )
    running.prefix = prefix  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()
        databases.drop_all()
