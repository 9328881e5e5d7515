"""The CloudEvents 1.0 envelope and the registry of event types.

Every record on a Bondgenoot topic is one CloudEvent in structured JSON mode: the record value is
the whole envelope, the record key is the aggregate id (``subject``), and the W3C ``traceparent``
travels in the record headers. The pydantic models here are the source of truth for the contracts
in ``contracts/`` (``make contracts`` regenerates them).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_BASE = "https://bondgenoot.eu/contracts/schemas"


class EventData(BaseModel):
    """The ``data`` of one event type; subclasses are registered with :func:`event`."""

    model_config = ConfigDict(extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[str]
    public: ClassVar[bool] = True

    @classmethod
    def dataschema(cls) -> str:
        return f"{SCHEMA_BASE}/{cls.event_type}.json"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope (structured mode)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(pattern=r"^/services/[a-z-]+$")
    type: str = Field(pattern=r"^bondgenoot\.[a-z-]+\.[a-z-]+\.v\d+$")
    subject: str = Field(min_length=1)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]


E = TypeVar("E", bound=type[EventData])

EVENT_TYPES: dict[str, type[EventData]] = {}


def event(event_type: str, *, topic: str, public: bool = True) -> Any:
    """Register an EventData subclass under its CloudEvents ``type`` and its topic."""

    def register(cls: E) -> E:
        if event_type in EVENT_TYPES:
            raise ValueError(f"event type {event_type} registered twice")
        cls.event_type = event_type
        cls.topic = topic
        cls.public = public
        EVENT_TYPES[event_type] = cls
        return cls

    return register


class UnknownEventType(ValueError):
    """The envelope names a type that no contract defines."""


class NewerEventVersion(UnknownEventType):
    """No contract defines the type, but it is newer than what we know: its producer was upgraded first.

    That is ``<name>.v<N>`` where ``<name>`` has contracts only for versions below N, or where N is
    above every version any contract has (a type introduced at a version we have not reached).
    """


_VERSIONED = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)$")


def _name_and_version(event_type: str) -> tuple[str, int] | None:
    match = _VERSIONED.match(event_type)
    return (match["name"], int(match["version"])) if match else None


def is_newer_version(event_type: str) -> bool:
    """Whether an unregistered ``event_type`` is a later version than any contract we have for it."""
    parsed = _name_and_version(event_type)
    if parsed is None or event_type in EVENT_TYPES:
        return False
    name, version = parsed
    known = [v for n, v in filter(None, map(_name_and_version, EVENT_TYPES)) if n == name]
    if known:
        return version > max(known)
    return version > max((v for _, v in filter(None, map(_name_and_version, EVENT_TYPES))), default=0)


def envelope(data: EventData, *, source: str, subject: str, event_id: str | None = None) -> CloudEvent:
    """Wrap event data in its CloudEvent (a fresh random id unless ``event_id`` is given)."""
    return CloudEvent(
        **({"id": event_id} if event_id is not None else {}),
        source=f"/services/{source}",
        type=data.event_type,
        subject=subject,
        dataschema=data.dataschema(),
        data=data.model_dump(mode="json"),
    )


def parse_data(ce: CloudEvent) -> EventData:
    """Validate the envelope's ``data`` against the model registered for its ``type``."""
    model = EVENT_TYPES.get(ce.type)
    if model is None:
        if is_newer_version(ce.type):
            raise NewerEventVersion(f"{ce.type!r} is newer than every contract this service knows for it")
        raise UnknownEventType(f"no contract for event type {ce.type!r}")
    return model.model_validate(ce.data)
