"""Which unregistered event types count as newer versions (parked) and which as unknown (dead-lettered)."""

from __future__ import annotations

import pytest

from shared.events import EVENT_TYPES
from shared.events.base import CloudEvent, NewerEventVersion, UnknownEventType, is_newer_version, parse_data


@pytest.mark.parametrize(
    ("event_type", "newer"),
    [
        ("bondgenoot.project.closed.v2", True),  # next version of a known type
        ("bondgenoot.project.closed.v17", True),
        ("bondgenoot.project.archived.v2", True),  # unknown name, above every version we know
        ("bondgenoot.project.archived.v1", False),  # unknown name at a version we know: a producer bug
        ("bondgenoot.project.closed.v0", False),  # older than what we know
        ("bondgenoot.project.closed.v1", False),  # known
    ],
)
def test_newer_version_or_unknown(event_type: str, newer: bool) -> None:
    assert "bondgenoot.project.closed.v1" in EVENT_TYPES
    assert is_newer_version(event_type) is newer
    ce = CloudEvent(source="/services/projects", type=event_type, subject="p", data={"project_id": "p"})
    if event_type in EVENT_TYPES:
        parse_data(ce)
        return
    with pytest.raises(UnknownEventType) as raised:
        parse_data(ce)
    assert isinstance(raised.value, NewerEventVersion) is newer
