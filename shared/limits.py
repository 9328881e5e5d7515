"""Size limits every service shares, and the ASGI guard that refuses oversized request bodies.

How the numbers relate (docs/limits.md has the whole table):

* Kafka refuses a record over the producer's ``max.request.size`` (aiokafka ``max_request_size``,
  1 MiB by default) or the broker's/topic's ``message.max.bytes`` (1 MiB + 12 bytes by default).
* An event's record value (the CloudEvent JSON) may be at most :data:`MAX_EVENT_BYTES`; the rest of
  the record limit is margin for the key, the headers and the record batch overhead (a few hundred
  bytes) — and for a broker configured a little tighter than the default.
* The per-field maxima of the request models keep ordinary writes far below that; an entity that is
  large in aggregate (a company with a long history of big items) is refused with 413 naming the
  field that makes it large (:class:`EventTooLarge`), and nothing is written.
* A request body over ``HTTP_MAX_BODY_BYTES`` is refused with 413 before it is read into memory:
  by its ``Content-Length``, or while it streams in when it has none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KAFKA_MAX_REQUEST_BYTES = 1_048_576
"""The producer's default ``max.request.size`` (aiokafka's ``max_request_size``)."""
KAFKA_MESSAGE_MAX_BYTES = 1_048_588
"""The broker's default ``message.max.bytes`` (a topic may lower it with ``max.message.bytes``)."""
MAX_EVENT_BYTES = 900_000
"""Largest CloudEvent (record value, UTF-8 JSON) a service may emit; ~148 KiB below the record limit."""
DEFAULT_MAX_BODY_BYTES = 1_048_576
"""Default for ``HTTP_MAX_BODY_BYTES``: the largest request body any service reads."""
MAX_DB_INTEGER = 2**31 - 1
"""Largest value of an ``INTEGER`` column (PostgreSQL's int4); ``MAX_DB_BIGINT`` of a ``BIGINT``.

Every integer a request may send is bounded by the column it is compared with or stored in, so a
larger one is a 422 at the edge, not a 500 from the database (tests/unit/test_api_docs.py)."""
MAX_DB_BIGINT = 2**63 - 1
MAX_PAGE_LIMIT = 200
MAX_PAGE_OFFSET = 100_000
"""Deeper pages are refused (422): filter instead. Also keeps OFFSET far inside a 64-bit integer."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _too_large(limit: int) -> dict[str, Any]:
    return {
        "detail": [
            {
                "type": "body_too_large",
                "loc": ["body"],
                "msg": f"request body is larger than {limit} bytes",
                "ctx": {"limit": limit},
            }
        ]
    }


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    An ``HTTPException`` on purpose: FastAPI re-raises those from body parsing unchanged (any other
    exception becomes a 400), so the app's own handler answers 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit)["detail"])
        self.limit = limit


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``, before they are read into memory.

    A declared ``Content-Length`` over the limit is answered at once, without calling the app. A body
    without one (chunked) is counted as it streams; the chunk that passes the limit raises
    :class:`BodyTooLarge` instead of being handed over, so at most ``max_bytes`` plus one chunk is
    ever held.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_json(send, 413, _too_large(self.max_bytes))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Reached only when the app let it escape (a route reading the body itself).
            if started:
                raise
            await _send_json(send, 413, _too_large(self.max_bytes))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None


async def _send_json(send: Send, status: int, body: Mapping[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# --------------------------------------------------------------------------- events


class EventTooLarge(ValueError):
    """An event would exceed :data:`MAX_EVENT_BYTES`; ``field`` is the data field that contributes most."""

    def __init__(self, *, event_type: str, size: int, limit: int, field: str) -> None:
        super().__init__(f"{event_type} would be {size} bytes, over the {limit}-byte event limit (largest: {field})")
        self.event_type = event_type
        self.size = size
        self.limit = limit
        self.field = field


def largest_field(data: Mapping[str, Any]) -> str:
    """The top-level field of an entity that takes most bytes in JSON (``company.history`` → ``history``).

    Event data wraps the entity in one key (``{"company": {...}}``); the entity's own fields are what
    a request names, so a single nested object is looked into.
    """
    sizes = {key: len(json.dumps(value, ensure_ascii=False).encode()) for key, value in data.items()}
    if not sizes:
        return "body"
    key = max(sizes, key=lambda k: sizes[k])
    value = data[key]
    if isinstance(value, Mapping) and value and sizes[key] * 2 > sum(sizes.values()):
        return largest_field(value)
    return key


def check_event_size(event_type: str, data: Mapping[str, Any], payload: str, *, limit: int = MAX_EVENT_BYTES) -> int:
    """The payload's size in bytes; raises :class:`EventTooLarge` over ``limit``."""
    size = len(payload.encode("utf-8"))
    if size > limit:
        raise EventTooLarge(event_type=event_type, size=size, limit=limit, field=largest_field(data))
    return size


TEXT_CAPS: tuple[int, ...] = (2_000, 500, 200, 80, 20, 0)
"""The lengths free texts of a derived event are cut to, longest first, until the event fits."""
ENVELOPE_MARGIN = 4_096
"""Room for the CloudEvent envelope around the data (id, source, type, subject, time, dataschema)."""

M = TypeVar("M", bound=BaseModel)


def _cut(value: Any, cap: int, keep: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {key: item if key in keep else _cut(item, cap, keep) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, cap, keep) for item in value]
    if isinstance(value, str) and len(value) > cap:
        return value[: cap - 1] + "…" if cap else ""
    return value


def fit_event(data: M, *, keep: frozenset[str], limit: int = MAX_EVENT_BYTES) -> tuple[M, int | None]:
    """An event the service derived (not a request it can refuse) made to fit ``limit``.

    ``data`` as it is when it fits; else a copy whose free texts (every string not under a field
    named in ``keep``: identifiers, names, numbers stay) are cut to the longest of
    :data:`TEXT_CAPS` that fits. Returns the event and the cap used (None: nothing was cut). Raises
    :class:`EventTooLarge` when even empty texts do not fit.
    """
    dumped = data.model_dump(mode="json")
    for cap in (None, *TEXT_CAPS):
        candidate = dumped if cap is None else _cut(dumped, cap, keep)
        size = len(json.dumps(candidate, ensure_ascii=False).encode()) + ENVELOPE_MARGIN
        if size <= limit:
            return (data if cap is None else type(data).model_validate(candidate)), cap
    raise EventTooLarge(event_type=type(data).__name__, size=size, limit=limit, field=largest_field(dumped))
