"""A portal app over the in-memory fake services, on SQLite in a temporary directory (unit tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.portal.bootstrap import build
from services.portal.settings import PortalSettings
from tests.unit.portal.fakes import FakeServices

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(tmp_path: Path, fake: FakeServices) -> Iterator[TestClient]:
    settings = PortalSettings(
        PORTAL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}", BONDGENOOT_ENV="local"
    )  # type: ignore[call-arg]
    app, _portal = build(settings, transport=fake.transport())
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def login(client: TestClient, token: str) -> None:
    form = client.get("/login")
    r = client.post("/login", data={"token": token, "csrf_token": csrf_of(form.text), "next": ""})
    assert r.status_code == 303, r.text
