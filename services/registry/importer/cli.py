"""Command line: harvest funded EDF projects and attach them to registered organisations by PIC.

    python -m services.registry.importer --topics EDF-2023-DA-AIR-SPS:46039380,EDF-2022-RA-SENS-QPNT:90002201
    python -m services.registry.importer --topics-file topics.txt [--database-url URL] [--dry-run] [--json]

It writes to the registry's own database (``REGISTRY_DATABASE_URL``) through the outbox, so Kafka
need not be up: the registry's relay publishes the ``company.updated`` events when the service runs.
The portal endpoints come from ``REGISTRY_FT_PROJECTS_URL`` and ``REGISTRY_FT_DOCUMENT_URL`` (or
``--projects-url``/``--document-url``, e.g. a local replay). Exit status: 0 done, 1 done but some
topics or projects could not be read (re-running is safe), 2 usage error, 3 database unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from services.registry.importer.harvest import (
    HarvestProgress,
    ImportReport,
    TopicRef,
    attach_history,
    harvest,
    load_topics_file,
    parse_topics,
)
from services.registry.importer.portal import FundingPortal, Sleep
from services.registry.importer.settings import ImporterSettings
from services.registry.models import Company
from shared.consumer import InboxRecord
from shared.db import Database
from shared.outbox import OUTBOX_TABLES, UnitOfWorkFactory

SOURCE = "registry"
"""Events are the registry's own: same CloudEvents source as the service's."""


class TqdmProgress:
    """A progress bar over the projects being read, on stderr."""

    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._bar: tqdm[Any] | None = None

    def start(self, total: int) -> None:
        self._bar = tqdm(
            total=total, unit="project", desc="EDF projects", disable=not self._enabled, file=self._stream, leave=True
        )

    def advance(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(label[:30], refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


async def run_import(
    settings: ImporterSettings,
    topics: Sequence[TopicRef],
    *,
    dry_run: bool = False,
    progress: HarvestProgress | None = None,
    client: httpx.AsyncClient | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ImportReport:
    """Harvest the topics' projects and attach them in the registry database; return the report."""
    db = Database(settings.database_url, tables=[*OUTBOX_TABLES, InboxRecord, Company])
    try:
        await db.create_tables()  # a registry that never ran yet still gets its tables
        problems: list[str] = []
        async with FundingPortal(settings.portal_config(), client=client, sleep=sleep) as portal:
            projects = await harvest(
                topics, portal=portal, concurrency=settings.ft_concurrency, progress=progress, problems=problems
            )
        report = await attach_history(UnitOfWorkFactory(db, source=SOURCE), projects, dry_run=dry_run)
        report.problems[:0] = problems
        return report
    finally:
        await db.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry.importer",
        description="Attach funded EDF projects (Funding & Tenders Portal) to registered organisations by PIC.",
    )
    parser.add_argument(
        "--topics",
        action="append",
        default=[],
        metavar="TOPIC:CCM2ID,...",
        help="topics as TOPIC-ID:ccm2Id (or a bare ccm2Id), comma separated; repeatable",
    )
    parser.add_argument(
        "--topics-file",
        action="append",
        default=[],
        metavar="PATH",
        help="file of TOPIC-ID:ccm2Id lines, or JSON (a list, or an object with 'calls' like the EDF data set)",
    )
    parser.add_argument("--database-url", help="registry database (default: REGISTRY_DATABASE_URL or the SQLite file)")
    parser.add_argument("--projects-url", help="topicProjectsList.json URL (default: REGISTRY_FT_PROJECTS_URL)")
    parser.add_argument("--document-url", help="search-api document URL (default: REGISTRY_FT_DOCUMENT_URL)")
    parser.add_argument("--concurrency", type=int, help="portal requests in flight (default: REGISTRY_FT_CONCURRENCY)")
    parser.add_argument("--dry-run", action="store_true", help="harvest and count, but write nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and requests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    topics: list[TopicRef] = []
    try:
        for spec in args.topics:
            topics.extend(parse_topics(spec))
        for path in args.topics_file:
            topics.extend(load_topics_file(path))
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if not topics:
        parser.error("no topics: give --topics or --topics-file")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "database_url": args.database_url,
            "ft_projects_url": args.projects_url,
            "ft_document_url": args.document_url,
            "ft_concurrency": args.concurrency,
        }.items()
        if value is not None
    }
    settings = ImporterSettings(**overrides)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    print(f"reading {len(topics)} topic(s) from {settings.ft_projects_url}", file=sys.stderr, flush=True)
    progress = TqdmProgress(enabled=not args.no_progress)
    try:
        with logging_redirect_tqdm():
            report = asyncio.run(run_import(settings, topics, dry_run=args.dry_run, progress=progress))
    except (OSError, SQLAlchemyError) as exc:
        print(f"error: registry database not usable: {exc}", file=sys.stderr)
        return 3
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 1 if report.problems else 0
