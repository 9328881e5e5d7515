"""A consumer process for the crash test: it dies between its side effects and its offset commit."""

from __future__ import annotations

import asyncio
import json
import os

from shared.events.base import CloudEvent, envelope
from shared.events.projects import ProjectClosed
from shared.kafka import all_topics, ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from tests.integration.kafka_tools import Widget, produce
from tests.integration.test_consumer import count_widget

GROUP = "crash-test.widgets"


async def die_before_commit(ce: CloudEvent) -> None:
    if os.environ.get("CRASH_AFTER_SIDE_EFFECTS"):
        os._exit(17)  # no cleanup, no offset commit: as if the machine died


async def main() -> None:
    kafka = KafkaSettings()
    settings = ServiceSettings(database_url=os.environ["CRASH_DB_URL"], kafka=kafka)
    runtime = ServiceRuntime("crash-test", settings, tables=[Widget])
    processor = runtime.consumer(
        GROUP,
        topics=["projects.v1"],
        handlers={ProjectClosed.event_type: count_widget},
        after_side_effects=die_before_commit,
    )
    if os.environ.get("CRASH_AFTER_SIDE_EFFECTS"):
        await ensure_topics(kafka, all_topics(kafka))
        ce = envelope(ProjectClosed(project_id="crash"), source="projects", subject="crash")
        await produce(kafka, "projects.v1", [(b"crash", ce.model_dump_json().encode())])
    await runtime.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while processor.processed + processor.duplicates == 0 and loop.time() < deadline:
        await asyncio.sleep(0.1)
    async with runtime.db.sessions() as s:
        widget = await s.get(Widget, "crash")
    await runtime.stop()
    print(
        json.dumps(
            {
                "count": widget.count if widget else 0,
                "processed": processor.processed,
                "duplicates": processor.duplicates,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
