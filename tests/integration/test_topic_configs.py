"""companies.v1 is log-compacted by company id — also when it existed before it had to be (real broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.kafka import all_topics, ensure_topics, partition_counts
from shared.settings import KafkaSettings
from tests.infra import wait_for

pytestmark = pytest.mark.infra


@pytest.fixture
async def admin(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await client.start()
    yield client
    await client.close()


async def _configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's configs, once the broker describes them (a topic just created may have none yet)."""

    async def described() -> dict[str, str]:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [resource] = response.to_object()["resources"]
        return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}

    configs: dict[str, str] = await wait_for(described, timeout=20, what=f"the configs of {topic}")
    return configs


async def test_companies_topic_is_created_compacted_and_the_others_are_not(
    kafka_settings: KafkaSettings, admin: AIOKafkaAdminClient
) -> None:
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    assert (await _configs(admin, kafka_settings.topic("companies.v1")))["cleanup.policy"] == "compact"
    for other in ("projects.v1", "calls.v1", "suggestions.v1", "companies.v1.dlq"):
        assert (await _configs(admin, kafka_settings.topic(other)))["cleanup.policy"] == "delete", other
    counts = await partition_counts(kafka_settings, [kafka_settings.topic("projects.v1")])
    assert counts == {kafka_settings.topic("projects.v1"): kafka_settings.topic_partitions}


async def test_an_existing_companies_topic_is_switched_to_compaction_keeping_its_other_settings(
    kafka_settings: KafkaSettings, admin: AIOKafkaAdminClient
) -> None:
    topic = kafka_settings.topic("companies.v1")
    await admin.create_topics(
        [NewTopic(topic, 3, 1, topic_configs={"retention.ms": "86400000", "min.insync.replicas": "1"})]
    )
    assert (await _configs(admin, topic))["cleanup.policy"] == "delete"
    await ensure_topics(kafka_settings, all_topics(kafka_settings))
    configs = await _configs(admin, topic)
    assert configs["cleanup.policy"] == "compact"
    assert configs["retention.ms"] == "86400000"  # AlterConfigs replaces the set: ours was sent back
    await ensure_topics(kafka_settings, all_topics(kafka_settings))  # nothing left to change
    assert (await _configs(admin, topic))["cleanup.policy"] == "compact"
