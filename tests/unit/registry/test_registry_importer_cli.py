"""The importer's command line against the replay and a SQLite registry; its settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from services.registry import domain
from services.registry.importer.cli import main
from services.registry.importer.portal import DEFAULT_DOCUMENT_URL, DEFAULT_PROJECTS_URL
from services.registry.importer.settings import ImporterSettings
from services.registry.models import Company, CompanyCreate
from services.registry.replay.server import ReplayServer
from shared.consumer import InboxRecord
from shared.db import Database
from shared.outbox import OutboxRecord, UnitOfWorkFactory
from tests.infra import env
from tests.unit.registry.conftest import ARDENNE, EMPTY_TOPIC, TOPICS


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"


async def _seed(url: str) -> None:
    db = Database(url, tables=[OutboxRecord, InboxRecord, Company])
    await db.create_tables()
    async with UnitOfWorkFactory(db, source="registry")() as u:
        await domain.register_company(
            u,
            data=CompanyCreate(
                name="Ardenne Photonics",
                country="BE",
                city="Leuven",
                size="small",
                domains=["cybersecurity"],
                capabilities=["quantum sensors"],
                contact_email="info@example.com",
                pic=ARDENNE,
            ),
        )
        await u.commit()
    await db.dispose()


def test_cli_imports_then_finds_nothing_new(
    replay: ReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    url = _sqlite(tmp_path)
    asyncio.run(_seed(url))
    replay.state.fail_next(1, status=500)
    argv = [
        "--topics",
        TOPICS,
        "--topics",
        EMPTY_TOPIC,
        "--database-url",
        url,
        "--projects-url",
        replay.projects_url,
        "--document-url",
        replay.document_url,
    ]
    with env(REGISTRY_FT_BACKOFF_BASE="0.01"):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert "history items added:      3" in out
        assert "companies matched by PIC: 1" in out
        assert "unknown PICs:             6" in out
        assert "EDF projects: 100%" in err and "4/4" in err  # the progress bar
        assert "attempt 1/4 failed: HTTP 500" in caplog.text  # the injected 500 was retried

        assert main([*argv, "--json", "--no-progress"]) == 0
        out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["history_items_added"] == 0
    assert report["history_items_already_present"] == 3
    assert "EDF projects" not in err


def test_cli_exit_status_1_when_something_could_not_be_read(
    replay: ReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _sqlite(tmp_path)
    replay.state.fail_next(1, status=404, route="documents")
    topics_file = tmp_path / "topics.txt"
    topics_file.write_text("EDF-2021-SPACE-D-SSAX:90002104\n")
    argv = ["--topics-file", str(topics_file), "--database-url", url, "--no-progress"]
    with env(REGISTRY_FT_PROJECTS_URL=replay.projects_url, REGISTRY_FT_DOCUMENT_URL=replay.document_url):
        assert main(argv) == 1
    out, _ = capsys.readouterr()
    assert "projects seen:            0" in out
    assert "problems:                 1" in out and "HTTP 404" in out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        ([], "no topics"),
        (["--topics", "EDF-2023-X"], "bad topic"),
        (["--topics-file", str(tmp_path / "missing.txt")], "missing.txt"),
        (["--topics", "1", "--concurrency", "0"], "--concurrency"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_settings_from_environment() -> None:
    with env(
        REGISTRY_FT_PROJECTS_URL="http://replay/p.json",
        REGISTRY_FT_DOCUMENT_URL="",
        REGISTRY_FT_MAX_ATTEMPTS="2",
        REGISTRY_DATABASE_URL="postgresql://x/y",
    ):
        settings = ImporterSettings()
    config = settings.portal_config()
    assert config.projects_url == "http://replay/p.json"
    assert config.document_url == DEFAULT_DOCUMENT_URL  # empty means the real portal
    assert config.max_attempts == 2
    assert settings.database_url == "postgresql://x/y"
    assert ImporterSettings().ft_projects_url == DEFAULT_PROJECTS_URL
