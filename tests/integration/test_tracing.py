"""One trace from an HTTP request, through the outbox and Kafka, into a consumer of another service."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.registry.bootstrap import build
from services.registry.settings import RegistrySettings
from shared.events.base import CloudEvent
from shared.events.companies import CompanyRegistered
from shared.outbox import UnitOfWork
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings
from tests.infra import Databases, wait_for

pytestmark = pytest.mark.infra

COMPANY = {
    "name": "Trace Robotics",
    "country": "BE",
    "city": "Gent",
    "organisation_type": "company",
    "size": "small",
    "domains": ["autonomous-systems"],
    "capabilities": ["autonomous ground vehicles for convoy logistics"],
    "contact_email": "ops@trace.example",
}


async def noop(uow: UnitOfWork, ce: CloudEvent, data: Any) -> None:
    return None


async def test_one_trace_from_http_request_through_outbox_and_kafka_to_consumer(
    databases: Databases, kafka_settings: KafkaSettings, spans: InMemorySpanExporter
) -> None:
    app, registry = build(RegistrySettings(database_url=databases.create("registry"), kafka=kafka_settings))
    observer = ServiceRuntime(
        "observer",
        ServiceSettings(database_url=databases.create("observer"), kafka=kafka_settings),
        tables=[],
    )
    processor = observer.consumer(
        "observer.companies", topics=["companies.v1"], handlers={CompanyRegistered.event_type: noop}
    )
    async with registry.lifespan(), observer.lifespan():
        await wait_for(observer.kafka_ready.is_set, timeout=30, what="observer connected")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://registry") as client:
            response = await client.post("/companies", json=COMPANY)
        assert response.status_code == 201, response.text
        await wait_for(lambda: processor.processed == 1, timeout=30, what="event consumed")
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    topic = kafka_settings.topic("companies.v1")
    http = next(s for s in finished if s.name.startswith("POST /companies") and s.kind == trace.SpanKind.SERVER)
    publish = by_name[f"{topic} publish"]
    process = by_name[f"{topic} process"]
    assert http.context.trace_id == publish.context.trace_id == process.context.trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
