"""Bounded JSON: size and nesting depth are measured before anything is parsed."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from shared.json_bounds import JsonBounds, JsonBoundsExceeded, loads_bounded, nesting_depth


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _random_json(rng: random.Random, depth: int) -> Any:
    tricky = ['"]]]', "[{", "\\", '\\"[', "}}\\\\", "é[", "\u2028"]
    kind = rng.randrange(5) if depth < 12 else 4
    if kind == 0:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 1:
        return {rng.choice(tricky) + str(i): _random_json(rng, depth + 1) for i in range(rng.randrange(4))}
    if kind == 2:
        return rng.choice(tricky) * rng.randrange(3)
    if kind == 3:
        return rng.choice([None, True, 1.5, -3])
    return "".join(rng.choice(tricky) for _ in range(rng.randrange(3)))


def test_depth_matches_the_parsed_structure_whatever_the_strings_contain() -> None:
    rng = random.Random(20261201)
    for _ in range(2000):
        value = _random_json(rng, 0)
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
            assert nesting_depth(text.encode()) == _depth(value), text


def test_deeper_than_the_limit_is_refused_before_json_loads_could_overflow_the_stack() -> None:
    payload = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(payload)  # what happened before: not a ValueError, so it escaped the consumer
    with pytest.raises(JsonBoundsExceeded) as refused:
        loads_bounded(payload, JsonBounds())
    assert refused.value.reason == "too-deep" and "50001" in refused.value.detail


def test_larger_than_the_limit_is_refused_by_its_size() -> None:
    with pytest.raises(JsonBoundsExceeded) as refused:
        loads_bounded(b'"' + b"x" * 2000 + b'"', JsonBounds(max_bytes=1000))
    assert refused.value.reason == "too-large"


def test_at_the_limits_is_parsed() -> None:
    payload = json.dumps({"a": [[["x"]]]}).encode()
    assert loads_bounded(payload, JsonBounds(max_bytes=len(payload), max_depth=4)) == {"a": [[["x"]]]}


@pytest.mark.parametrize(
    "payload",
    [
        b'"' + b'\\"' * 300_000,  # an unterminated string full of escaped quotes
        b'"a",' * 250_000,
        b"[" * 1_000_000,
        b'"' + b"a" * 1_000_000 + b"\\",
    ],
)
def test_measuring_a_hostile_megabyte_stays_linear(payload: bytes) -> None:
    started = time.perf_counter()
    nesting_depth(payload)
    # Generous for a loaded machine; a quadratic scan of these inputs takes minutes.
    assert time.perf_counter() - started < 5
