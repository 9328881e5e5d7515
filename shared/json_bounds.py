"""JSON from outside, parsed with a bounded size and nesting depth before any model sees it.

``json.loads`` recurses once per nesting level and raises :class:`RecursionError` (not ``ValueError``)
on a few thousand brackets; pydantic and our own handlers recurse too. A record from the broker is
therefore measured first: its size, then its nesting depth (a linear scan that skips string
contents), and only a record within both bounds is parsed.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""The broker's default ``message.max.bytes``: no record on a default topic is larger."""

# A JSON string, possessive so that every match attempt is linear; an unterminated string (or one
# ending in a lone backslash) runs to the end of the input instead of being retried at each quote.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


@dataclass(frozen=True)
class JsonBounds:
    """The largest record and the deepest nesting a consumer parses."""

    max_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    max_depth: int = 64
    """Our deepest contract (a consortium proposal inside suggestions) nests about ten levels."""


class JsonBoundsExceeded(ValueError):
    """The input is larger or deeper than allowed; ``reason`` is ``too-large`` or ``too-deep``."""

    def __init__(self, reason: Literal["too-large", "too-deep"], detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def nesting_depth(payload: bytes) -> int:
    """How deeply arrays and objects nest in ``payload`` (brackets inside strings do not count)."""
    skeleton = _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    if not skeleton:
        return 0
    return max(0, max(accumulate(array("b", skeleton.translate(_STEPS)))))


def loads_bounded(payload: bytes | str, bounds: JsonBounds) -> Any:
    """``json.loads`` after checking size and depth; raises JsonBoundsExceeded or ValueError."""
    data = payload.encode() if isinstance(payload, str) else payload
    if len(data) > bounds.max_bytes:
        raise JsonBoundsExceeded("too-large", f"record of {len(data)} bytes; the limit is {bounds.max_bytes} bytes")
    depth = nesting_depth(data)
    if depth > bounds.max_depth:
        raise JsonBoundsExceeded("too-deep", f"nesting depth {depth}; the limit is {bounds.max_depth}")
    return json.loads(data)
