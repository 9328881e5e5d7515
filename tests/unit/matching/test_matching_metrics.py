"""Benchmark metric functions on toy input."""

from __future__ import annotations

import pytest

from bench.matching.metrics import (
    hit_at_k,
    mean,
    ndcg_at_k,
    overlap,
    paired_bootstrap_ci,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)


def test_recall_at_k() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    assert recall_at_k(ranked, {"a", "d", "z"}, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, {"a", "d", "z"}, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, {"a", "d", "z"}, 50) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, set(), 3) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"b", "c"}) == pytest.approx(1 / 2)
    assert reciprocal_rank(["a", "b"], {"z"}) == 0.0


def test_mean_and_overlap() -> None:
    assert mean([1.0, 0.0, 0.5]) == pytest.approx(0.5)
    assert mean([]) is None
    assert overlap(["a", "b", "c", "d"], ["a", "b", "x"]) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert overlap([], ["a"]) == (0.0, 0.0)


def test_precision_ndcg_and_hit() -> None:
    ranked = ["a", "b", "c", "d"]
    assert precision_at_k(ranked, {"a", "c", "z"}, 2) == pytest.approx(0.5)
    assert precision_at_k(ranked, {"a"}, 10) == pytest.approx(0.1)  # a list of k is shown, k counts
    # Both relevant items first: ideal; the same items lower down score less.
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, 20) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a", "b"], {"a", "b"}, 20) < 1.0
    assert ndcg_at_k(["x", "y"], {"a"}, 20) == 0.0 and ndcg_at_k(ranked, set(), 20) == 0.0
    assert hit_at_k(ranked, {"d"}, 4) == 1.0 and hit_at_k(ranked, {"d"}, 3) == 0.0


def test_paired_bootstrap_ci_is_reproducible_and_brackets_the_mean() -> None:
    ours = [0.3, 0.5, 0.2, 0.4, 0.6, 0.1]
    theirs = [0.2, 0.3, 0.2, 0.3, 0.4, 0.2]
    low, high = paired_bootstrap_ci(ours, theirs)
    assert low <= sum(a - b for a, b in zip(ours, theirs, strict=True)) / len(ours) <= high
    assert (low, high) == paired_bootstrap_ci(ours, theirs)  # fixed seed
    # Identical methods: no difference at all.
    assert paired_bootstrap_ci(ours, ours) == (0.0, 0.0)
    # A method that is better on every project: the whole interval is above zero.
    assert paired_bootstrap_ci([x + 0.1 for x in theirs], theirs)[0] > 0
