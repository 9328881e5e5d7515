"""GET /ops/dead-letters counts what waits in the dead-letter topics of what a service consumes."""

from __future__ import annotations

import pytest

from shared.kafka import all_topics, ensure_topics
from shared.ops import dead_letter_counts
from shared.settings import KafkaSettings
from tests.integration.kafka_tools import produce

pytestmark = pytest.mark.infra


async def test_dead_letters_are_counted_per_consumed_topic(kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    assert await dead_letter_counts(kafka_settings, ["companies.v1", "projects.v1"]) == {
        "companies.v1.dlq": 0,
        "projects.v1.dlq": 0,
    }
    await produce(kafka_settings, "companies.v1.dlq", [(b"k1", b"bad"), (b"k2", b"worse"), (b"k3", b"worst")])
    await produce(kafka_settings, "projects.v1.dlq", [(b"k", b"bad")])
    counts = await dead_letter_counts(kafka_settings, ["companies.v1", "projects.v1", "companies.v1"])
    assert counts == {"companies.v1.dlq": 3, "projects.v1.dlq": 1}
    assert await dead_letter_counts(kafka_settings, []) == {}
