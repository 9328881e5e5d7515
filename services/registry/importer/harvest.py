"""Harvest funded projects from the portal and attach them to registered organisations by PIC.

:func:`harvest` lists each topic's funded projects and reads every project's consortium;
:func:`attach_history` adds one history item per (project, registered participant) through
:func:`services.registry.domain.add_project_history`, one unit of work per company, so every changed
profile commits together with its ``company.updated`` outbox row. Importing the same projects again
adds nothing: the domain function skips items whose topic id and title the profile already lists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import col, select

from services.registry import domain
from services.registry.importer.formats import (
    ROLE_RANK,
    FormatError,
    FundedProject,
    Participant,
    ProjectSummary,
    clean_text,
    funded_project,
)
from services.registry.importer.portal import FundingPortal, PortalError
from services.registry.models import Company, HistoryIn
from shared.outbox import UnitOfWorkFactory

log = logging.getLogger(__name__)

SUMMARY_CHARS = 1200
"""Objectives run to ~4,000 characters; the first paragraph or so says what the project does."""
MAX_PARTNERS = 100
MAX_TITLE = 200
PIC_CHUNK = 500
_TOPIC_YEAR = re.compile(r"^[A-Z]+-(\d{4})-")
_CCM2 = re.compile(r"^\d{1,20}$")


class TopicRef(BaseModel):
    """A topic to harvest: its ccm2Id (what the portal is asked with) and, ideally, its identifier."""

    model_config = ConfigDict(frozen=True)

    identifier: str | None = Field(default=None, max_length=100)
    ccm2_id: str

    @field_validator("identifier", mode="before")
    @classmethod
    def _identifier(cls, value: Any) -> str | None:
        text = str(value).strip().upper() if value is not None else ""
        return text or None

    @field_validator("ccm2_id", mode="before")
    @classmethod
    def _ccm2(cls, value: Any) -> str:
        text = str(value).strip() if value is not None and not isinstance(value, bool) else ""
        if not _CCM2.match(text):
            raise ValueError(f"ccm2Id {value!r} is not a number")
        return text

    @classmethod
    def parse(cls, text: str) -> TopicRef:
        """``EDF-2023-DA-AIR-SPS:46039380`` or a bare ccm2Id ``46039380``."""
        identifier, sep, ccm2 = text.strip().rpartition(":")
        try:
            return cls(identifier=identifier if sep else None, ccm2_id=ccm2)
        except ValidationError as exc:
            raise ValueError(f"bad topic {text!r}: expected TOPIC-ID:ccm2Id or a ccm2Id") from exc

    def __str__(self) -> str:
        return f"{self.identifier}:{self.ccm2_id}" if self.identifier else self.ccm2_id


def parse_topics(spec: str) -> list[TopicRef]:
    """A comma- or whitespace-separated list of topics."""
    return [TopicRef.parse(part) for part in re.split(r"[,\s]+", spec) if part.strip()]


def load_topics_file(path: Path | str) -> list[TopicRef]:
    """Topics from a file: lines of ``TOPIC-ID:ccm2Id`` (``#`` comments), or JSON.

    JSON may be a list of such strings, a list of objects with ``identifier`` and ``ccm2Id``, or an
    object with ``calls`` mapping topic ids to objects with ``ccm2Id`` (the shape of the EDF data set);
    entries without a ccm2Id are skipped.
    """
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith(("[", "{")):
        return _topics_from_json(json.loads(text))
    refs: list[TopicRef] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            refs.extend(parse_topics(line))
    return refs


def _topics_from_json(data: Any) -> list[TopicRef]:
    entries: Iterable[Any]
    if isinstance(data, Mapping):
        calls = data.get("calls", data.get("topics"))
        if isinstance(calls, Mapping):
            entries = [
                {"identifier": key, **value} if isinstance(value, Mapping) else value for key, value in calls.items()
            ]
        elif isinstance(calls, list):
            entries = calls
        else:
            raise ValueError("topics JSON: expected a list, or an object with 'calls' or 'topics'")
    elif isinstance(data, list):
        entries = data
    else:
        raise ValueError("topics JSON: expected a list or an object")
    refs: list[TopicRef] = []
    for entry in entries:
        if isinstance(entry, str):
            refs.append(TopicRef.parse(entry))
        elif isinstance(entry, Mapping):
            ccm2 = entry.get("ccm2Id", entry.get("ccm2_id"))
            if ccm2 in (None, ""):
                continue
            refs.append(TopicRef(identifier=entry.get("identifier", entry.get("topic_id")), ccm2_id=ccm2))
        else:
            raise ValueError(f"topics JSON: unexpected entry {entry!r}")
    return refs


class HarvestProgress(Protocol):
    """What the harvest reports while it reads projects (the CLI draws a progress bar from it)."""

    def start(self, total: int) -> None:
        """The number of projects to read is known."""

    def advance(self, label: str) -> None:
        """One more project was read (or given up on)."""


async def harvest(
    topics: Sequence[TopicRef | str],
    *,
    portal: FundingPortal,
    concurrency: int = 4,
    progress: HarvestProgress | None = None,
    problems: list[str] | None = None,
) -> list[FundedProject]:
    """The funded projects of the given topics, each with its participants.

    A topic or project the portal will not give (after the client's retries) is left out and
    described in ``problems``; the rest is still returned.
    """
    refs = _unique_topics(TopicRef.parse(t) if isinstance(t, str) else t for t in topics)
    gate = asyncio.Semaphore(max(1, concurrency))
    found = problems if problems is not None else []

    async def list_topic(ref: TopicRef) -> list[ProjectSummary]:
        async with gate:
            try:
                return await portal.fetch_topic_projects(ref.ccm2_id)
            except (PortalError, FormatError) as exc:
                _problem(found, f"topic {ref}: projects not listed: {exc}")
                return []

    async with asyncio.TaskGroup() as group:
        listings = [group.create_task(list_topic(ref)) for ref in refs]
    jobs: list[tuple[TopicRef, ProjectSummary, str]] = []
    seen: set[tuple[str, str]] = set()
    for ref, listing in zip(refs, listings, strict=True):
        for summary in listing.result():
            programme_id = summary.programme_id or portal.config.programme_id
            if (programme_id, summary.project_id) not in seen:
                seen.add((programme_id, summary.project_id))
                jobs.append((ref, summary, programme_id))
    if progress is not None:
        progress.start(len(jobs))

    async def read_project(ref: TopicRef, summary: ProjectSummary, programme_id: str) -> FundedProject | None:
        try:
            async with gate:
                document = await portal.fetch_project_participants(programme_id, summary.project_id)
            return funded_project(
                summary, document, ccm2_id=ref.ccm2_id, topic_id=ref.identifier, programme_id=programme_id
            )
        except (PortalError, FormatError) as exc:
            _problem(found, f"project {summary.project_id} ({summary.acronym or '?'}) of topic {ref}: skipped: {exc}")
            return None
        finally:
            if progress is not None:
                progress.advance(summary.acronym or summary.project_id)

    async with asyncio.TaskGroup() as group:
        reads = [group.create_task(read_project(*job)) for job in jobs]
    return [p for p in (task.result() for task in reads) if p is not None]


def _unique_topics(refs: Iterable[TopicRef]) -> list[TopicRef]:
    by_ccm2: dict[str, TopicRef] = {}
    for ref in refs:
        if ref.ccm2_id not in by_ccm2 or (ref.identifier and not by_ccm2[ref.ccm2_id].identifier):
            by_ccm2[ref.ccm2_id] = ref
    return list(by_ccm2.values())


def _problem(problems: list[str], message: str) -> None:
    log.warning("%s", message)
    problems.append(message)


def summarise(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Shorten to ``limit`` characters: at a sentence end if one is near, else at a word, with an ellipsis."""
    text = clean_text(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("; "))
    if sentence_end >= limit * 0.6:
        return cut[: sentence_end + 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-(") + "…"


def project_year(project: FundedProject) -> int | None:
    """The year the project started, else the call year in the topic id (EDF-2023-... → 2023)."""
    if project.start_date is not None:
        return project.start_date.year
    match = _TOPIC_YEAR.match(project.topic_id or "")
    return int(match[1]) if match else None


def history_item(project: FundedProject, participant: Participant) -> HistoryIn:
    """What one participant's profile records about the project: partners are everyone else."""
    partners: dict[str, str] = {}
    for other in project.participants:
        if other is participant or (participant.pic is not None and other.pic == participant.pic):
            continue
        name = other.name[:MAX_TITLE].strip()
        if name and name.casefold() not in partners:
            partners[name.casefold()] = name
    year = project_year(project)
    return HistoryIn(
        programme=project.programme,
        year=year if year is not None and 1980 <= year <= 2100 else None,
        title=project.title[:MAX_TITLE],
        summary=summarise(project.objective),
        topic_id=project.topic_id,
        role=participant.role,
        partners=list(partners.values())[:MAX_PARTNERS],
    )


@dataclass
class ImportReport:
    """What an import saw and did."""

    projects_seen: int = 0
    participants_seen: int = 0
    participants_without_pic: int = 0
    pics_seen: int = 0
    companies_matched: int = 0
    companies_updated: int = 0
    history_items_added: int = 0
    history_items_already_present: int = 0
    history_items_no_room: int = 0
    unknown_pics: int = 0
    unknown_pic_sample: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"projects seen:            {self.projects_seen}",
            f"participants seen:        {self.participants_seen} ({self.participants_without_pic} without a PIC)",
            f"distinct PICs:            {self.pics_seen}",
            f"companies matched by PIC: {self.companies_matched}",
            f"companies updated:        {self.companies_updated}"
            + (" (dry run: nothing written)" if self.dry_run else ""),
            f"history items added:      {self.history_items_added}",
            f"already in the profile:   {self.history_items_already_present}",
            f"unknown PICs:             {self.unknown_pics}"
            + (f" (e.g. {', '.join(self.unknown_pic_sample[:10])})" if self.unknown_pic_sample else ""),
        ]
        if self.history_items_no_room:
            out.append(f"left out, profile full:   {self.history_items_no_room}")
        if self.problems:
            out.append(f"problems:                 {len(self.problems)}")
            out += [f"  - {p}" for p in self.problems]
        return out


async def _companies_by_pic(uow: UnitOfWorkFactory, pics: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    async with uow() as u:
        for start in range(0, len(pics), PIC_CHUNK):
            chunk = list(pics[start : start + PIC_CHUNK])
            rows = await u.session.exec(
                select(Company.id, Company.pic).where(col(Company.pic).in_(chunk)).order_by(col(Company.id))
            )
            for company_id, pic in rows.all():
                if pic is not None:
                    found[pic].append(company_id)
    return found


def _best_rows(project: FundedProject) -> dict[str, Participant]:
    """Each PIC's row in the project; a PIC listed twice keeps its strongest role."""
    best: dict[str, Participant] = {}
    for participant in project.participants:
        if participant.pic is None:
            continue
        current = best.get(participant.pic)
        if current is None or ROLE_RANK.get(participant.role or "", 9) < ROLE_RANK.get(current.role or "", 9):
            best[participant.pic] = participant
    return best


async def attach_history(
    uow: UnitOfWorkFactory, projects: Sequence[FundedProject], *, dry_run: bool = False
) -> ImportReport:
    """Add each project to the history of every registered company whose PIC took part in it.

    One unit of work per company: the domain function changes the row and emits company.updated, the
    unit commits (or, with ``dry_run``, rolls back). Unknown PICs are counted, never attached.
    """
    report = ImportReport(projects_seen=len(projects), dry_run=dry_run)
    rows_by_project: list[tuple[FundedProject, dict[str, Participant]]] = []
    pics: set[str] = set()
    for project in projects:
        report.participants_seen += len(project.participants)
        report.participants_without_pic += sum(1 for p in project.participants if p.pic is None)
        best = _best_rows(project)
        rows_by_project.append((project, best))
        pics.update(best)
    report.pics_seen = len(pics)
    companies = await _companies_by_pic(uow, sorted(pics))
    unknown = sorted(pics - companies.keys())
    report.unknown_pics = len(unknown)
    report.unknown_pic_sample = unknown[:20]

    items_by_company: dict[str, list[HistoryIn]] = defaultdict(list)
    for project, best in rows_by_project:
        for pic, participant in best.items():
            if pic not in companies:
                continue
            try:
                item = history_item(project, participant)
            except ValidationError as exc:
                report.problems.append(f"project {project.project_id}: no history item for PIC {pic}: {exc}")
                continue
            for company_id in companies[pic]:
                items_by_company[company_id].append(item)
    report.companies_matched = len(items_by_company)

    for company_id, items in items_by_company.items():
        async with uow() as u:
            try:
                added, no_room = await domain.add_project_history(u, company_id=company_id, items=items)
            except domain.CompanyNotFound:
                report.problems.append(f"company {company_id} was removed during the import")
                continue
            if dry_run:
                await u.rollback()
            else:
                await u.commit()
        report.history_items_added += len(added)
        report.history_items_no_room += no_room
        report.history_items_already_present += len(items) - len(added) - no_room
        report.companies_updated += 1 if added else 0
    return report
