"""OpenTelemetry tracing: one tracer provider per process, W3C trace context in Kafka headers.

Spans follow the messaging conventions: ``<topic> publish`` (producer, by the outbox relay) and
``<topic> process`` (consumer). The ``traceparent`` current when a unit of work emits an event is
stored on its outbox row, so the relay's publish span continues the trace of the request that caused
it, even if the relay runs seconds later or after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from shared.settings import TelemetrySettings

log = logging.getLogger(__name__)

_configured = False


def configure_tracing(service: str, settings: TelemetrySettings, *, exporter: SpanExporter | None = None) -> None:
    """Install the process-wide tracer provider once; the exporter follows the environment."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"bondgenoot-{service}"}))
    if exporter is None:
        kind = settings.exporter
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = (settings.otlp_endpoint or "http://127.0.0.1:4318").rstrip("/") + "/v1/traces"
            exporter = OTLPSpanExporter(endpoint=endpoint)
        elif kind == "console":
            exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, if any (stored on outbox rows)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Context:
    """A context whose parent is the given traceparent (or an empty one)."""
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def context_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    """Extract trace context from Kafka record headers."""
    carrier = {k: v.decode("latin-1") for k, v in (headers or ()) if k in ("traceparent", "tracestate")}
    return propagate.extract(carrier)


def headers_with_trace(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the given values plus the active span's trace context."""
    carrier = dict(headers)
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]
