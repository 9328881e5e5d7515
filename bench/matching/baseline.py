"""The honest baseline: plain BM25 (rank-bm25's BM25Okapi) of the topic text against profile text.

Same tokenisation and same profile text as the matcher's text signal, no query weighting, no priors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rank_bm25 import BM25Okapi

from services.matching.matcher import CompanyProfile, Target
from services.matching.matcher.features import profile_text
from services.matching.matcher.text import target_text
from shared.text import tokenize


class TokenCache:
    """Tokenising the same profile text for every held-out project would dominate the run time."""

    def __init__(self) -> None:
        self._cache: dict[str, list[str]] = {}

    def tokens(self, text: str) -> list[str]:
        found = self._cache.get(text)
        if found is None:
            found = tokenize(text)
            self._cache[text] = found
        return found


def bm25_rank(
    target: Target, candidates: Sequence[str], profiles: Mapping[str, CompanyProfile], cache: TokenCache
) -> list[str]:
    """Candidate ids, best first (ties broken by id so runs are reproducible)."""
    docs = [cache.tokens(profile_text(profiles[c])) for c in candidates]
    return _order(BM25Okapi(docs).get_scores(tokenize(target_text(target))), candidates)


def _order(scores: Sequence[float], candidates: Sequence[str]) -> list[str]:
    order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), candidates[i]))
    return [candidates[i] for i in order]


class Bm25Baseline:
    """``bm25_rank`` that keeps the last index: under the temporal protocol every target of a year
    has the same candidates, so the corpus is tokenised and indexed once per year."""

    def __init__(self) -> None:
        self.cache = TokenCache()
        self._candidates: tuple[str, ...] = ()
        self._profiles: Mapping[str, CompanyProfile] | None = None  # held, so identity stays meaningful
        self._index: BM25Okapi | None = None

    def rank(self, target: Target, candidates: Sequence[str], profiles: Mapping[str, CompanyProfile]) -> list[str]:
        if self._index is None or profiles is not self._profiles or tuple(candidates) != self._candidates:
            self._index = BM25Okapi([self.cache.tokens(profile_text(profiles[c])) for c in candidates])
            self._candidates, self._profiles = tuple(candidates), profiles
        return _order(self._index.get_scores(tokenize(target_text(target))), candidates)


def greedy_top(ranked: Sequence[str], k: int) -> list[str]:
    return list(ranked[:k])


__all__ = ["Bm25Baseline", "TokenCache", "bm25_rank", "greedy_top", "np"]
