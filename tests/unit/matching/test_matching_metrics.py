"""Benchmark metric functions on toy input."""

from __future__ import annotations

import pytest

from bench.matching.metrics import mean, overlap, recall_at_k, reciprocal_rank


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
