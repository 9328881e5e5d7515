"""Kafka plumbing shared by every service: the reliable producer and explicit topic creation."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from faststream.security import BaseSecurity, SASLScram256, SASLScram512

from shared.events import TOPICS, companies
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"

# Topics whose latest record per key is the state of that key, kept whole (not deleted after the
# default seven days): every matching replica rebuilds its index by reading companies.v1 from the
# start, so a company registered a year ago must still be there. Compaction drops older profiles of a
# company and keeps its newest event (for a removed company: company.removed, which carries only the id).
TOPIC_CONFIGS: Mapping[str, Mapping[str, str]] = {
    companies.TOPIC: {"cleanup.policy": "compact"},
}


def partition_of(key: str, partitions: int) -> int:
    """The partition a keyed record goes to: Kafka's default partitioner (murmur2), as our producers use it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def reliable_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """A producer that only reports success once every in-sync replica has the record.

    ``acks=all`` plus idempotence means a retried send cannot duplicate or reorder records within a
    partition, which the outbox relay relies on for per-aggregate ordering.
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=settings.request_timeout_ms,
        linger_ms=2,
        **settings.client_security(),
    )


def kafka_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The FastStream security object for the configured SASL/SCRAM credentials (None for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    scram = SASLScram512 if settings.sasl_mechanism == "SCRAM-SHA-512" else SASLScram256
    options = settings.client_security()
    return scram(
        username=options["sasl_plain_username"] or "",
        password=options["sasl_plain_password"] or "",
        use_ssl=settings.security_protocol == "SASL_SSL",
        ssl_context=options.get("ssl_context"),
    )


def topic_configs(settings: KafkaSettings, physical: str) -> dict[str, str]:
    """The configs a physical topic is created with (and that :func:`ensure_topics` keeps in place)."""
    configs = {"min.insync.replicas": str(min(2, settings.topic_replication))}
    for name, extra in TOPIC_CONFIGS.items():
        if physical == settings.topic(name):
            configs.update(extra)
    return configs


def all_topics(settings: KafkaSettings, extra: tuple[str, ...] = ()) -> list[str]:
    """Every physical topic the platform uses: each public/private topic and its dead-letter topic."""
    names = [*TOPICS, *extra]
    return [settings.topic(n) for base in names for n in (base, base + DLQ_SUFFIX)]


async def ensure_topics(settings: KafkaSettings, topics: list[str]) -> list[str]:
    """Create missing topics with the configured partitions and replication; return those created.

    Broker auto-creation is off on purpose: a typo in a topic name must fail loudly, and partition
    counts decide ordering guarantees, so they are set here and nowhere else.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=settings.request_timeout_ms,
        **settings.client_security(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _compact_existing(admin, settings, [t for t in topics if t in existing])
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=t,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=topic_configs(settings, t),
            )
            for t in missing
        ]
        response = await admin.create_topics(new)
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            # Another service may create the same topic between our list and create: that is fine.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"could not create topic {name}: error code {code} {topic_error[2:]}")
        log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


async def _compact_existing(admin: AIOKafkaAdminClient, settings: KafkaSettings, existing: list[str]) -> None:
    """Turn on compaction for a topic that must be compacted but was created before it had to be.

    AlterConfigs (the only form aiokafka speaks) replaces a topic's whole set of dynamic configs, so
    the ones already set on the topic are sent back with it.
    """
    wanted = {t: TOPIC_CONFIGS[name] for name in TOPIC_CONFIGS if (t := settings.topic(name)) in existing}
    if not wanted:
        return
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted])
    current: dict[str, dict[str, str]] = {}
    dynamic: dict[str, dict[str, str]] = {}
    for response in described:
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            for entry in resource["config_entries"]:
                current.setdefault(name, {})[entry["config_names"]] = entry["config_value"]
                if not entry.get("is_default", False) and entry.get("config_source", 1) == 1:
                    dynamic.setdefault(name, {})[entry["config_names"]] = entry["config_value"]
    for topic, configs in wanted.items():
        if all(current.get(topic, {}).get(k) == v for k, v in configs.items()):
            continue
        log.warning("topic %s: setting %s (it was created without)", topic, dict(configs))
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={**dynamic.get(topic, {}), **configs})
        for response in await admin.alter_configs([resource]):
            for error in response.to_object()["resources"]:
                if error["error_code"] != 0:
                    raise RuntimeError(f"could not configure topic {topic}: {error}")


async def partition_counts(settings: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """How many partitions each of these physical topics has (fresh cluster metadata)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=settings.request_timeout_ms,
        **settings.client_security(),
    )
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
    if missing := [t for t in topics if t not in counts]:
        raise RuntimeError(f"no partition metadata for {missing}")
    return counts
