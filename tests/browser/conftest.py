"""The browser tests' world: the five services and the portal as processes on real Kafka and PostgreSQL,
started once per session, driven by Playwright through Debian's chromium.

``playwright install`` cannot download browsers here: pytest-playwright launches /usr/bin/chromium
(``BROWSER`` to override). On a failure pytest-playwright writes a screenshot of every open page under
``.data/browser-failures/`` (git-ignored; ``--screenshot only-on-failure`` in pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.calls.replay.server import run_replay_server
from tests.e2e.platform import Platform, ServiceProcess, start_platform, start_portal
from tests.infra import Databases, KafkaBroker, topic_prefix

CHROMIUM = os.environ.get("BROWSER", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread
    from its first test to the end of the session, and asyncio tests after it could not start theirs."""
    browser = [item for item in items if "tests/browser/" in str(item.path)]
    items[:] = [item for item in items if item not in browser] + browser
    if shutil.which(CHROMIUM) is None:
        skip = pytest.mark.skip(reason=f"no browser at {CHROMIUM} (.ci/run installs Debian's chromium)")
        for item in browser:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": ["--disable-gpu", "--no-first-run", "--disable-background-networking", "--no-sandbox"],
    }


@dataclass
class Live:
    """The running platform and portal, and the accounts the journeys use."""

    platform: Platform
    portal: ServiceProcess

    @property
    def url(self) -> str:
        return self.portal.url

    def api(self, service: str, token: str | None = None) -> httpx.Client:
        return self.platform.client(service, token)

    def new_account(self, role: str, name: str) -> str:
        with self.platform.admin("registry") as c:
            r = c.post("/accounts", json={"role": role, "name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["api_token"])

    def register_company(self, body: dict[str, Any]) -> tuple[str, str]:
        with self.api("registry") as c:
            r = c.post("/companies", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), str(r.json()["api_token"])


@pytest.fixture(scope="session")
def live(kafka_broker: KafkaBroker, pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    databases = Databases(pg_admin_url)
    log_dir = tmp_path_factory.mktemp("browser-platform")
    with run_replay_server() as replay:
        platform = start_platform(
            databases=databases,
            bootstrap=kafka_broker.bootstrap,
            prefix=topic_prefix(),
            log_dir=log_dir,
            portal_url=replay.endpoint,
        )
        try:
            portal = start_portal(platform, database_url=databases.create("portal"), log_dir=log_dir)  # PostgreSQL
            yield Live(platform, portal)
        finally:
            platform.stop()  # the portal too
            databases.drop_all()


@pytest.fixture(scope="session")
def base_url(live: Live) -> str:
    return live.url
