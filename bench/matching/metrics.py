"""Ranking and consortium metrics (pure functions, unit-tested on toy input)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np


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


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the first ``k`` of ``ranked`` that are relevant (k in the denominator, as a list of k is shown)."""
    wanted = set(relevant)
    return len(wanted.intersection(ranked[:k])) / k if k > 0 else 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary-relevance nDCG@k: hits near the top count more; 1 when the first min(k, |relevant|) are all hits."""
    wanted = set(relevant)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in wanted)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(wanted))))
    return dcg / ideal


def hit_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 when any relevant item is in the first ``k`` (coordinator@k), else 0."""
    wanted = set(relevant)
    return 1.0 if wanted.intersection(ranked[:k]) else 0.0


def paired_bootstrap_ci(
    ours: Sequence[float], theirs: Sequence[float], *, samples: int = 10_000, seed: int = 2024, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of mean(ours - theirs), resampling the paired items (projects) with replacement.

    Fixed seed: the same inputs always give the same interval.
    """
    diffs = np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)
    if diffs.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(samples, diffs.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return round(float(low), 4), round(float(high), 4)
