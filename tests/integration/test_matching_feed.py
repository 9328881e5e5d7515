"""Two matching replicas as the service wires them, on the real broker and PostgreSQL.

Each replica builds its index from companies.v1 alone (no company table exists); a poison record is
dead-lettered once however many replicas read it; an event of a newer version holds its company
out of the index; the ``matching`` group splits the target partitions; a company change reaches the
target through whichever replica owns it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlmodel import select

from services.matching.bootstrap import build
from services.matching.models import SuggestionSet
from services.matching.settings import MatchingSettings
from shared.events.base import envelope
from shared.events.companies import CompanyProfileData, CompanyRegistered, CompanyRemoved, CompanyUpdated
from shared.events.projects import ProjectData, ProjectPosted
from shared.kafka import all_topics, ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings
from tests.infra import Databases, wait_for
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

Replica = tuple[FastAPI, ServiceRuntime]

SONAR = ["underwater acoustic sonar signal processing", "autonomous underwater vehicles"]


def _profile(cid: str, capabilities: list[str]) -> CompanyProfileData:
    return CompanyProfileData(
        id=cid,
        name=f"Company {cid}",
        country="BE",
        city="Gent",
        organisation_type="company",
        size="small",
        domains=["maritime"],
        capabilities=capabilities,
    )


def _event(data: Any, subject: str, *, type_: str | None = None) -> tuple[bytes, bytes]:
    ce = envelope(data, source="registry", subject=subject)
    if type_ is not None:
        ce = ce.model_copy(update={"type": type_})
    return subject.encode(), ce.model_dump_json().encode()


def _project(pid: str) -> tuple[bytes, bytes]:
    project = ProjectData(
        id=pid,
        title="Autonomous mine countermeasures",
        summary="Underwater sonar and autonomous vehicles for mine countermeasures",
        programme="FSDB",
        institute="Flemish Institute for Sensing",
        domains=["maritime"],
        sought_capabilities=["underwater acoustic sonar", "autonomous underwater vehicles"],
        partners_wanted=3,
        status="open",
    )
    return pid.encode(), envelope(
        ProjectPosted(project=project), source="projects", subject=pid
    ).model_dump_json().encode()


async def _health(runtime: ServiceRuntime) -> dict[str, Any]:
    return (await runtime.health())[1]


@pytest.fixture
async def replicas(
    databases: Databases, kafka_settings: KafkaSettings
) -> AsyncIterator[list[tuple[FastAPI, ServiceRuntime]]]:
    url = databases.create("matching")
    built = [
        build(MatchingSettings(MATCHING_DATABASE_URL=url, OUTBOX_POLL_INTERVAL=0.1, kafka=kafka_settings))  # type: ignore[call-arg]
        for _ in range(2)
    ]
    try:
        yield built
    finally:
        for _, runtime in built:
            if not runtime.stop_event.is_set():  # a test that failed half-way left it running
                await runtime.stop()


async def test_two_replicas_share_the_targets_and_each_reads_every_company(
    replicas: list[Replica], kafka_settings: KafkaSettings
) -> None:
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    newer = "bondgenoot.company.updated.v2"
    await produce(
        kafka_settings,
        "companies.v1",
        [
            _event(CompanyRegistered(company=_profile("first", ["naval platform integration"])), "first"),
            _event(CompanyRegistered(company=_profile("gone", SONAR)), "gone"),
            _event(CompanyRemoved(company_id="gone"), "gone"),
            (b"broken", b"{not json"),
            _event(CompanyRegistered(company=_profile("future", ["hull design"])), "future"),
            _event(CompanyUpdated(company=_profile("future", SONAR), changed_fields=[]), "future", type_=newer),
            _event(CompanyUpdated(company=_profile("future", SONAR), changed_fields=[]), "future"),
        ],
    )
    [(_, a), (_, b)] = replicas
    await a.start()
    await wait_for(lambda: a.kafka_ready.is_set(), timeout=60, what="replica A connected")
    index = (await wait_for(lambda: _built(a), timeout=60, what="replica A's index"))["index"]
    # "gone" was removed; "future" stays at its v1 profile, its v2 update and what follows are held.
    assert (index["companies"], index["held_companies"], index["dead_lettered"]) == (2, 1, 1)
    await produce(kafka_settings, "projects.v1", [_project(f"p-{n}") for n in range(6)])
    await wait_for(lambda: _ranked(a, 6), timeout=60, what="six projects ranked by replica A")

    await b.start()
    await wait_for(lambda: _built(b), timeout=60, what="replica B's index")
    owned = await wait_for(lambda: _split(a, b), timeout=90, what="the partitions split between A and B")
    assert set.union(*owned) == {
        kafka_settings.topic(f"{t}[{p}]") for t in ("projects.v1", "calls.v1") for p in range(3)
    }
    assert (await _health(b))["index"]["dead_lettered"] == 0  # A had dead-lettered it already
    dlq = await read_topic(kafka_settings, "companies.v1.dlq", expect=2, timeout=5)
    assert [r.key for r in dlq] == [b"broken"]

    # A sonar company registers: whichever replica owns each project ranks it in, exactly once per project.
    await produce(kafka_settings, "companies.v1", [_event(CompanyRegistered(company=_profile("sme", SONAR)), "sme")])
    await wait_for(lambda: _ranked(a, 6, first="sme"), timeout=60, what="every project ranking the SME first")
    for runtime in (a, b):
        assert (await _health(runtime))["index"]["companies"] == 3
    records = await read_topic(kafka_settings, "suggestions.v1", expect=100, timeout=5)
    computed = [json.loads(r.value) for r in records if b"suggestions.computed" in r.value]
    with_sme = [e for e in computed if any(s["company_id"] == "sme" for s in e["data"]["suggestions"])]
    assert sorted(e["subject"] for e in with_sme) == [f"p-{n}" for n in range(6)]
    await b.stop()
    await a.stop()


async def _built(runtime: ServiceRuntime) -> dict[str, Any] | None:
    health = await _health(runtime)
    return health if health["index"]["built"] and health["targets"]["caught_up"] else None


async def _split(a: ServiceRuntime, b: ServiceRuntime) -> list[set[str]] | None:
    owned = [set((await _health(r))["targets"]["partitions"]) for r in (a, b)]
    if all(owned) and not owned[0] & owned[1] and len(owned[0] | owned[1]) == 6:
        return owned
    return None


async def _ranked(runtime: ServiceRuntime, count: int, *, first: str | None = None) -> bool:
    async with runtime.db.sessions() as session:
        sets = (await session.exec(select(SuggestionSet))).all()
        return len(sets) == count and all(first is None or s.suggestions[0]["company_id"] == first for s in sets)
