"""The event catalogue: importing this package registers every event type."""

from shared.events import alerts, calls, companies, consortia, projects, suggestions
from shared.events.base import EVENT_TYPES, CloudEvent, EventData, UnknownEventType, envelope, parse_data

TOPICS: tuple[str, ...] = (
    companies.TOPIC,
    projects.TOPIC,
    calls.TOPIC,
    suggestions.TOPIC,
    alerts.TOPIC,
    consortia.TOPIC,
)

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "CloudEvent",
    "EventData",
    "UnknownEventType",
    "envelope",
    "parse_data",
]
