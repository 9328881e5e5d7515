"""Ranking and consortium metrics (pure functions, unit-tested on toy input)."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of ``relevant`` found in the first ``k`` of ``ranked`` (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    wanted = set(relevant)
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant item (1-based), 0 when none is ranked."""
    wanted = set(relevant)
    for position, item in enumerate(ranked, start=1):
        if item in wanted:
            return 1.0 / position
    return 0.0


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def overlap(proposed: Collection[str], real: Collection[str]) -> tuple[float, float]:
    """(precision, recall) of a proposed member set against the real consortium."""
    p, r = set(proposed), set(real)
    if not p or not r:
        return 0.0, 0.0
    hit = len(p & r)
    return hit / len(p), hit / len(r)
