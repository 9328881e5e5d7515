"""Harvesting the replay and attaching history by PIC (registry tables on SQLite)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from services.registry import domain
from services.registry.importer.formats import FundedProject, Participant
from services.registry.importer.harvest import (
    SUMMARY_CHARS,
    TopicRef,
    attach_history,
    harvest,
    history_item,
    load_topics_file,
    parse_topics,
    project_year,
    summarise,
)
from services.registry.importer.portal import FundingPortal
from services.registry.models import CompanyCreate, HistoryIn
from services.registry.replay.server import ReplayServer
from shared.events.companies import CompanyUpdated
from shared.outbox import OutboxRecord, UnitOfWorkFactory
from tests.unit.registry.conftest import ARDENNE, EMPTY_TOPIC, SCHELDT, TOPICS


class Progress:
    def __init__(self) -> None:
        self.total: int | None = None
        self.labels: list[str] = []

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, label: str) -> None:
        self.labels.append(label)


async def _register(uow: UnitOfWorkFactory, name: str, pic: str | None, **extra: Any) -> str:
    async with uow() as u:
        company = await domain.register_company(
            u,
            data=CompanyCreate(
                name=name,
                country="BE",
                city="Gent",
                size="small",
                domains=["cybersecurity"],
                capabilities=["secure radios"],
                contact_email="info@example.com",
                pic=pic,
                **extra,
            ),
        )
        await u.commit()
        return company.id


async def _history(uow: UnitOfWorkFactory, company_id: str) -> list[dict[str, Any]]:
    async with uow() as u:
        return list((await domain.get_company_or_raise(u, company_id=company_id)).history)


async def _updated_events(uow: UnitOfWorkFactory) -> list[tuple[str, dict[str, Any]]]:
    """(key, payload) of the company.updated rows in the outbox."""
    async with uow() as u:
        query = select(OutboxRecord).where(OutboxRecord.event_type == CompanyUpdated.event_type)
        rows = (await u.session.exec(query.order_by(col(OutboxRecord.id)))).all()
        return [(row.key, json.loads(row.payload)) for row in rows]


def _participant(pic: str | None, name: str, role: str = "participant") -> Participant:
    return Participant(pic=pic, name=name, role=role)


def _project(**overrides: Any) -> FundedProject:
    values: dict[str, Any] = {
        "programme": "EDF",
        "programme_id": "44181033",
        "project_id": "199000999",
        "topic_id": "EDF-2023-DA-AIR-TEST",
        "ccm2_id": "90000001",
        "title": "A project",
        "objective": "Does things.",
        "start_date": date(2024, 3, 1),
        "participants": [_participant("100000001", "ONE"), _participant("100000002", "TWO")],
    }
    values.update(overrides)
    return FundedProject(**values)


# -- harvest ---------------------------------------------------------------------------------------


async def test_harvest_reads_every_project_of_every_topic(replay: ReplayServer, portal: FundingPortal) -> None:
    progress = Progress()
    projects = await harvest([*parse_topics(TOPICS), EMPTY_TOPIC], portal=portal, progress=progress)
    assert [(p.topic_id, p.acronym) for p in projects] == [
        ("EDF-2022-RA-SENS-QPNT", "QUANTNAV"),
        ("EDF-2022-RA-SENS-QPNT", "MAGSENSE"),
        ("EDF-2023-DA-NAVAL-USVX", "SEAWARD"),
        ("EDF-2021-SPACE-D-SSAX", "ORBITWATCH"),
    ]
    assert progress.total == 4
    assert sorted(progress.labels) == ["MAGSENSE", "ORBITWATCH", "QUANTNAV", "SEAWARD"]
    seaward = projects[2]
    assert seaward.programme == "EDF" and seaward.ccm2_id == "90002302"
    assert [p.pic for p in seaward.participants] == [SCHELDT, "990000059", "990000073", None, None]
    routes = [r.route for r in replay.state.requests]
    assert routes.count("topics") == 4 and routes.count("documents") == 4


async def test_harvest_skips_what_the_portal_will_not_give_and_says_so(
    replay: ReplayServer, portal: FundingPortal
) -> None:
    topics = replay.state.topics
    topics[1]["projects"][0]["participants"] = ["not json"]  # SEAWARD's document is broken
    replay.state.set_topics(topics)
    replay.state.fail_next(3, status=503, route="topics")  # the first topic listing fails every attempt
    problems: list[str] = []
    projects = await harvest(parse_topics(TOPICS), portal=portal, concurrency=1, problems=problems)
    assert [p.acronym for p in projects] == ["ORBITWATCH"]
    assert len(problems) == 2
    assert problems[0].startswith("topic EDF-2022-RA-SENS-QPNT:90002201: projects not listed: portal unavailable")
    assert problems[1].startswith("project 199000201 (SEAWARD) of topic EDF-2023-DA-NAVAL-USVX:90002302: skipped")


async def test_harvest_dedupes_topics_and_projects(replay: ReplayServer, portal: FundingPortal) -> None:
    projects = await harvest(["90002201", "EDF-2022-RA-SENS-QPNT:90002201"], portal=portal)
    assert [p.acronym for p in projects] == ["QUANTNAV", "MAGSENSE"]
    assert {p.topic_id for p in projects} == {"EDF-2022-RA-SENS-QPNT"}  # the named reference wins
    assert [r.route for r in replay.state.requests].count("topics") == 1


async def test_bare_ccm2_id_leaves_the_topic_id_unknown(portal: FundingPortal) -> None:
    projects = await harvest(["90002104"], portal=portal)
    assert projects[0].topic_id is None
    assert project_year(projects[0]) is None  # no start date, no topic id


# -- history items ---------------------------------------------------------------------------------


def test_history_item_lists_everyone_else_as_partners() -> None:
    me = _participant("100000001", "ME", "coordinator")
    project = _project(
        participants=[
            me,
            _participant("100000002", "TWO"),
            _participant("100000001", "ME AGAIN", "third_party"),  # my own second row
            _participant(None, "NO PIC"),
            _participant("100000003", "two"),  # same name, other case
            _participant("100000004", ""),
        ]
    )
    item = history_item(project, me)
    assert item == HistoryIn(
        programme="EDF",
        year=2024,
        title="A project",
        summary="Does things.",
        topic_id="EDF-2023-DA-AIR-TEST",
        role="coordinator",
        partners=["TWO", "NO PIC"],
    )


def test_history_item_caps_title_and_partners() -> None:
    others = [_participant(f"2{i:08d}", f"PARTNER {i}") for i in range(120)]
    me = _participant("100000001", "ME")
    item = history_item(_project(title="T" * 300, participants=[me, *others]), me)
    assert len(item.title) == 200
    assert len(item.partners) == 100


def test_year_falls_back_to_the_topic_id() -> None:
    assert project_year(_project(start_date=None, topic_id="EDF-2021-SPACE-D-SSAX")) == 2021
    assert project_year(_project(start_date=None, topic_id="whatever")) is None


def test_summary_is_cut_at_a_sentence_or_word() -> None:
    assert summarise("  short   text ") == "short text"
    sentences = " ".join(f"Sentence number {i} says something useful." for i in range(80))
    cut = summarise(sentences)
    assert len(cut) <= SUMMARY_CHARS and cut.endswith("useful.")
    words = "word " * 400
    cut = summarise(words)
    assert len(cut) <= SUMMARY_CHARS and cut.endswith("word…")


# -- attach ----------------------------------------------------------------------------------------


async def test_attach_adds_history_by_pic_once(
    replay: ReplayServer, portal: FundingPortal, uow: UnitOfWorkFactory
) -> None:
    ardenne = await _register(uow, "Ardenne Photonics", ARDENNE)
    scheldt = await _register(uow, "Scheldt Maritime Systems", SCHELDT)
    nopic = await _register(uow, "No PIC BV", None)
    projects = await harvest(parse_topics(TOPICS), portal=portal)

    report = await attach_history(uow, projects)
    assert (report.projects_seen, report.participants_seen, report.participants_without_pic) == (4, 16, 2)
    assert (report.companies_matched, report.companies_updated, report.history_items_added) == (2, 2, 5)
    assert report.pics_seen == 7 and report.unknown_pics == 5
    assert ARDENNE not in report.unknown_pic_sample and "990000028" in report.unknown_pic_sample
    assert report.problems == []

    a = await _history(uow, ardenne)
    assert [(h["title"], h["role"], h["year"]) for h in a] == [
        ("Quantum-aided navigation in satellite-denied environments", "coordinator", 2023),
        ("Magnetic anomaly sensing for covert navigation", "participant", 2024),
        ("Space situational awareness sensors network", "participant", 2021),
    ]
    s = await _history(uow, scheldt)
    assert [(h["topic_id"], h["role"]) for h in s] == [
        ("EDF-2022-RA-SENS-QPNT", "associated_partner"),
        ("EDF-2023-DA-NAVAL-USVX", "coordinator"),
    ]
    assert "OBSERVATOIRE NAVAL INDEPENDANT" in s[1]["partners"]
    assert (await _history(uow, nopic)) == []
    events = await _updated_events(uow)
    assert sorted(key for key, _ in events) == sorted([ardenne, scheldt])
    payload = next(p for key, p in events if key == ardenne)
    assert payload["data"]["changed_fields"] == ["history"]
    assert len(payload["data"]["company"]["history"]) == 3

    again = await attach_history(uow, projects)
    assert (again.companies_matched, again.companies_updated, again.history_items_added) == (2, 0, 0)
    assert again.history_items_already_present == 5
    assert len(await _history(uow, ardenne)) == 3
    assert len(await _updated_events(uow)) == 2  # no new events


async def test_existing_history_is_kept_and_counts_as_present(uow: UnitOfWorkFactory) -> None:
    manual = {"programme": "EDF", "title": "  a   PROJECT ", "topic_id": "edf-2023-da-air-test", "year": 2024}
    company_id = await _register(uow, "Already Listed NV", "100000001", history=[manual])
    report = await attach_history(uow, [_project()])
    assert report.history_items_added == 0 and report.history_items_already_present == 1
    assert len(await _history(uow, company_id)) == 1


async def test_dry_run_writes_nothing(uow: UnitOfWorkFactory) -> None:
    company_id = await _register(uow, "Dry Run NV", "100000001")
    report = await attach_history(uow, [_project()], dry_run=True)
    assert report.history_items_added == 1 and report.dry_run
    assert (await _history(uow, company_id)) == []
    assert await _updated_events(uow) == []


async def test_two_companies_with_one_pic_both_get_the_project(uow: UnitOfWorkFactory) -> None:
    first = await _register(uow, "Group Entity A", "100000002")
    second = await _register(uow, "Group Entity B", "100000002")
    report = await attach_history(uow, [_project()])
    assert report.companies_matched == 2 and report.history_items_added == 2
    for company_id in (first, second):
        (item,) = await _history(uow, company_id)
        assert item["partners"] == ["ONE"]


async def test_a_pic_listed_twice_keeps_its_strongest_role(uow: UnitOfWorkFactory) -> None:
    company_id = await _register(uow, "Twice NV", "100000001")
    participants = [
        _participant("100000001", "TWICE", "third_party"),
        _participant("100000001", "TWICE", "coordinator"),
        _participant("100000002", "TWO"),
    ]
    await attach_history(uow, [_project(participants=participants)])
    (item,) = await _history(uow, company_id)
    assert item["role"] == "coordinator"
    assert item["partners"] == ["TWO"]


async def test_a_full_profile_takes_no_more(uow: UnitOfWorkFactory) -> None:
    full = [{"programme": "EDF", "title": f"Old {i}"} for i in range(200)]
    company_id = await _register(uow, "Busy NV", "100000001", history=full)
    report = await attach_history(uow, [_project()])
    assert report.history_items_added == 0 and report.history_items_no_room == 1
    assert "left out, profile full:   1" in report.lines()
    assert len(await _history(uow, company_id)) == 200


async def test_domain_function_raises_for_unknown_company(uow: UnitOfWorkFactory) -> None:
    async with uow() as u:
        with pytest.raises(domain.CompanyNotFound):
            await domain.add_project_history(u, company_id="nope", items=[])


# -- topic lists -----------------------------------------------------------------------------------


def test_topic_refs_parse() -> None:
    assert parse_topics("EDF-2023-DA-AIR-SPS:46039380, 46039381\nedf-2022-ra-x:1") == [
        TopicRef(identifier="EDF-2023-DA-AIR-SPS", ccm2_id="46039380"),
        TopicRef(identifier=None, ccm2_id="46039381"),
        TopicRef(identifier="EDF-2022-RA-X", ccm2_id="1"),
    ]
    assert str(TopicRef.parse("EDF-2023-DA-AIR-SPS:46039380")) == "EDF-2023-DA-AIR-SPS:46039380"
    with pytest.raises(ValueError, match="bad topic"):
        TopicRef.parse("EDF-2023-DA-AIR-SPS")


def test_topics_file_formats(tmp_path: Path) -> None:
    lines = tmp_path / "topics.txt"
    lines.write_text("# funded in 2023\nEDF-2023-DA-AIR-SPS:46039380\n\n90000001, 90000002  # more\n")
    assert [str(t) for t in load_topics_file(lines)] == ["EDF-2023-DA-AIR-SPS:46039380", "90000001", "90000002"]

    listing = tmp_path / "topics.json"
    listing.write_text(json.dumps(["EDF-2023-DA-AIR-SPS:46039380", {"identifier": "EDF-2022-X", "ccm2Id": 7}]))
    assert [str(t) for t in load_topics_file(listing)] == ["EDF-2023-DA-AIR-SPS:46039380", "EDF-2022-X:7"]

    calls = tmp_path / "calls.json"
    calls.write_text(
        json.dumps({"calls": {"EDF-2021-A": {"ccm2Id": "11"}, "EDF-2021-B": {"ccm2Id": ""}, "EDF-2021-C": {"x": 1}}})
    )
    assert [str(t) for t in load_topics_file(calls)] == ["EDF-2021-A:11"]

    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(ValueError, match="topics JSON"):
        load_topics_file(bad)
