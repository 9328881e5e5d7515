"""Kafka plumbing shared by every service: the reliable producer and explicit topic creation."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.security import BaseSecurity, SASLScram256, SASLScram512

from shared.events import TOPICS
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


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
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=t,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs={"min.insync.replicas": str(min(2, settings.topic_replication))},
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
