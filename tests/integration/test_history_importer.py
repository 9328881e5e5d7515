"""The project-history importer against the portal replay, real PostgreSQL and the test Kafka broker.

Two companies with PICs are registered through the registry's domain; the importer harvests the
replay (whose first answers fail) and attaches their projects; each gets one company.updated in the
outbox, which the registry's relay then publishes. A second run, through the real command line in its
own process, adds nothing; unknown PICs are reported, never attached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from services.registry import domain
from services.registry.importer.cli import run_import
from services.registry.importer.harvest import attach_history, harvest, history_item, parse_topics
from services.registry.importer.portal import FundingPortal
from services.registry.importer.settings import ImporterSettings
from services.registry.models import Company, CompanyCreate
from services.registry.replay.server import ReplayServer, run_replay_server
from shared.consumer import InboxRecord
from shared.db import Database
from shared.events.companies import CompanyRegistered, CompanyUpdated
from shared.kafka import all_topics, ensure_topics
from shared.outbox import OUTBOX_TABLES, OutboxRecord, OutboxRelay, UnitOfWorkFactory
from shared.settings import KafkaSettings
from tests.infra import Databases
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
TOPICS = (
    "EDF-2022-RA-SENS-QPNT:90002201,EDF-2023-DA-NAVAL-USVX:90002302,"
    "EDF-2021-SPACE-D-SSAX:90002104,EDF-2024-RA-CYBER-FICT:90002403"
)
ARDENNE = "990000011"  # replay data: QUANTNAV coordinator, MAGSENSE and ORBITWATCH participant
SCHELDT = "990000066"  # replay data: MAGSENSE associated partner, SEAWARD coordinator
UNKNOWN = {"990000028", "990000035", "990000042", "990000059", "990000073"}


async def _registry(databases: Databases) -> tuple[str, Database, UnitOfWorkFactory]:
    url = databases.create("registry")
    db = Database(url, tables=[*OUTBOX_TABLES, InboxRecord, Company])
    await db.create_tables()
    return url, db, UnitOfWorkFactory(db, source="registry")


async def _register(uow: UnitOfWorkFactory, name: str, pic: str | None) -> str:
    async with uow() as u:
        company = await domain.register_company(
            u,
            data=CompanyCreate(
                name=name,
                country="BE",
                city="Antwerpen",
                size="medium",
                domains=["maritime"],
                capabilities=["unmanned surface vessels"],
                contact_email="info@example.com",
                pic=pic,
            ),
        )
        await u.commit()
        return company.id


async def _histories(db: Database) -> dict[str, list[dict[str, Any]]]:
    async with db.sessions() as session:
        return {c.id: c.history for c in (await session.exec(select(Company))).all()}


async def _outbox(db: Database) -> list[tuple[str, str, str | None]]:
    """(event type, key, published_at) of every outbox row, oldest first."""
    async with db.sessions() as session:
        rows = (await session.exec(select(OutboxRecord).order_by(col(OutboxRecord.id)))).all()
        return [(r.event_type, r.key, r.published_at.isoformat() if r.published_at else None) for r in rows]


def _settings(url: str, replay: ReplayServer, kafka: KafkaSettings) -> ImporterSettings:
    return ImporterSettings(
        database_url=url,
        ft_projects_url=replay.projects_url,
        ft_document_url=replay.document_url,
        ft_backoff_base_s=0.01,
        ft_timeout_s=5,
        kafka=kafka,
    )


async def _run_cli(url: str, replay: ReplayServer) -> tuple[int, dict[str, Any], str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.registry.importer",
        "--topics",
        TOPICS,
        "--json",
        cwd=ROOT,
        env={
            **os.environ,
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_FT_PROJECTS_URL": replay.projects_url,
            "REGISTRY_FT_DOCUMENT_URL": replay.document_url,
            "REGISTRY_FT_BACKOFF_BASE": "0.01",
            # Kafka is deliberately unreachable: the importer only writes the outbox.
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, json.loads(out), err.decode()


async def test_history_is_attached_by_pic_once_and_published(
    databases: Databases, kafka_settings: KafkaSettings
) -> None:
    url, db, uow = await _registry(databases)
    ardenne = await _register(uow, "Ardenne Photonics", ARDENNE)
    scheldt = await _register(uow, "Scheldt Maritime Systems", SCHELDT)
    bystander = await _register(uow, "Bystander BV", None)

    with run_replay_server() as replay:
        replay.state.fail_next(2, status=500)  # the portal's first two answers fail
        report = await run_import(_settings(url, replay, kafka_settings), parse_topics(TOPICS))
        assert [r.status for r in replay.state.requests[:2]] == [500, 500]
        assert report.problems == []
        assert (report.projects_seen, report.participants_seen, report.participants_without_pic) == (4, 16, 2)
        assert (report.companies_matched, report.companies_updated, report.history_items_added) == (2, 2, 5)
        assert report.unknown_pics == len(UNKNOWN) and set(report.unknown_pic_sample) == UNKNOWN

        histories = await _histories(db)
        assert [(h["title"], h["role"]) for h in histories[ardenne]] == [
            ("Quantum-aided navigation in satellite-denied environments", "coordinator"),
            ("Magnetic anomaly sensing for covert navigation", "participant"),
            ("Space situational awareness sensors network", "participant"),
        ]
        assert [(h["topic_id"], h["year"], h["role"]) for h in histories[scheldt]] == [
            ("EDF-2022-RA-SENS-QPNT", 2024, "associated_partner"),
            ("EDF-2023-DA-NAVAL-USVX", 2024, "coordinator"),
        ]
        assert histories[scheldt][1]["partners"] == [
            "IBERIA RADAR LAB SL",
            "UNIVERSITEIT VAN HET NOORDERKWARTIER",
            "OBSERVATOIRE NAVAL INDEPENDANT",
            "HAVENLAB COOPERATIE UA",
        ]
        assert histories[bystander] == []
        outbox = await _outbox(db)
        updated = [(key, published) for event_type, key, published in outbox if event_type == CompanyUpdated.event_type]
        assert sorted(updated) == sorted([(ardenne, None), (scheldt, None)])  # in the outbox, not yet published

        # Again, through the command line in its own process, with Kafka unreachable: nothing new.
        code, again, err = await _run_cli(url, replay)
        assert code == 0, err
        assert "EDF projects: 100%" in err
        assert (again["companies_matched"], again["history_items_added"], again["companies_updated"]) == (2, 0, 0)
        assert again["history_items_already_present"] == 5
        assert again["unknown_pics"] == len(UNKNOWN)
    assert await _histories(db) == histories
    assert await _outbox(db) == outbox

    # The registry's relay publishes the outbox rows; consumers see one company.updated per company.
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    relay = OutboxRelay(db, kafka_settings, service="registry")
    assert await relay.publish_pending() == 5
    await relay.close()
    records = await read_topic(kafka_settings, "companies.v1", expect=5)
    events = [json.loads(r.value) for r in records]
    assert sorted(e["type"] for e in events) == sorted(
        [CompanyRegistered.event_type] * 3 + [CompanyUpdated.event_type] * 2
    )
    published = {e["subject"]: e["data"] for e in events if e["type"] == CompanyUpdated.event_type}
    assert set(published) == {ardenne, scheldt}
    assert published[ardenne]["changed_fields"] == ["history"]
    assert [h["title"] for h in published[ardenne]["company"]["history"]] == [h["title"] for h in histories[ardenne]]
    assert published[scheldt]["company"]["pic"] == SCHELDT
    await db.dispose()


async def test_concurrent_imports_do_not_duplicate_history(databases: Databases) -> None:
    _, db, uow = await _registry(databases)
    ardenne = await _register(uow, "Ardenne Photonics", ARDENNE)
    with run_replay_server() as replay:
        async with FundingPortal(_settings("", replay, KafkaSettings()).portal_config()) as portal:
            projects = await harvest(parse_topics(TOPICS), portal=portal)
    items = [history_item(p, next(x for x in p.participants if x.pic == ARDENNE)) for p in projects[:1]]

    # One import holds the row; a second one waits for it and then sees its additions.
    async with uow() as first:
        added, _ = await domain.add_project_history(first, company_id=ardenne, items=items)
        assert len(added) == 1

        async def second_import() -> int:
            async with uow() as second:
                added, _ = await domain.add_project_history(second, company_id=ardenne, items=items)
                await second.commit()
                return len(added)

        waiting = asyncio.create_task(second_import())
        await asyncio.sleep(0.5)
        assert not waiting.done(), "the second import should wait for the row lock"
        await first.commit()
    assert await asyncio.wait_for(waiting, timeout=10) == 0

    reports = await asyncio.gather(*(attach_history(uow, projects) for _ in range(3)))
    assert sum(r.history_items_added for r in reports) == 2
    assert len((await _histories(db))[ardenne]) == 3
    updated = [key for event_type, key, _ in await _outbox(db) if event_type == CompanyUpdated.event_type]
    assert len(updated) == 2 and set(updated) == {ardenne}
    await db.dispose()
