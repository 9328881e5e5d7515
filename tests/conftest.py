"""Session fixtures: the real Kafka broker and PostgreSQL every integration and e2e test uses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.settings import KafkaSettings, TelemetrySettings
from shared.telemetry import configure_tracing
from tests.infra import (
    Databases,
    KafkaBroker,
    port_open,
    postgres_admin_url,
    postgres_version,
    topic_prefix,
)

ROOT = Path(__file__).resolve().parents[1]

SPANS = InMemorySpanExporter()
# One tracer provider per process: the tests read spans from memory.
configure_tracing("tests", TelemetrySettings(), exporter=SPANS)

_broker: KafkaBroker | None = None
INFRA: dict[str, str] = {}


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"kafka: Apache Kafka {KafkaBroker.version()} (broker started by deploy/kafka/kafka.sh)"]
    if os.environ.get("DATABASE_URL"):
        try:
            lines.append(f"postgresql: {postgres_version(os.environ['DATABASE_URL'])}")
        except Exception as exc:  # a header is informational; the fixtures fail loudly later
            lines.append(f"postgresql: not reachable yet ({type(exc).__name__})")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the real infrastructure the run used, even under -q."""
    for name, what in INFRA.items():
        terminalreporter.write_line(f"[infra] {name}: {what}")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The shared test broker (its own ports and data dir), started once per session."""
    global _broker
    external = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if external:
        _, port = external.rsplit(":", 1)
        yield KafkaBroker(port=int(port), controller_port=0, run_dir=Path("/nonexistent"))
        return
    broker = KafkaBroker(
        port=int(os.environ.get("TEST_KAFKA_PORT", "19192")),
        controller_port=int(os.environ.get("TEST_KAFKA_CONTROLLER_PORT", "19193")),
        run_dir=ROOT / ".data" / "kafka-test",
    )
    if not port_open("127.0.0.1", broker.port):
        # Every test creates its own prefixed topics: start from an empty log dir, or thousands of
        # partitions left by earlier runs make the broker slow to start (and short of heap).
        broker.down(wipe=True)
        broker.up()
    _broker = broker
    INFRA["kafka"] = f"Apache Kafka {KafkaBroker.version()} at {broker.bootstrap}"
    yield broker
    if broker.started_here and not os.environ.get("KEEP_TEST_KAFKA"):
        broker.down(wipe=True)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = postgres_admin_url()
    INFRA["postgresql"] = f"PostgreSQL {postgres_version(url)}"
    return url


@pytest.fixture
def databases(pg_admin_url: str) -> Iterator[Databases]:
    dbs = Databases(pg_admin_url)
    yield dbs
    dbs.drop_all()


@pytest.fixture
def kafka_settings(kafka_broker: KafkaBroker) -> KafkaSettings:
    """Settings pointing at the test broker with a topic prefix of this test's own."""
    return KafkaSettings(
        KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,  # type: ignore[call-arg]
        TOPIC_PREFIX=topic_prefix(),
        TOPIC_PARTITIONS=3,
        TOPIC_REPLICATION=1,
    )


@pytest.fixture
def spans() -> InMemorySpanExporter:
    SPANS.clear()
    return SPANS
