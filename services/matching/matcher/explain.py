"""Readable reasons for a suggestion: matched domains, capability ↔ need pairs, carrying words.

Only computed for the handful of companies that are returned, so it can afford per-row Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

from services.matching.matcher.models import CapabilityMatch
from services.matching.matcher.text import BOILERPLATE_STEMS, _fold, stem, tokenize

_WORD = re.compile(r"[a-z0-9]+")


def surface_forms(text: str) -> dict[str, str]:
    """Stem -> the first word in the text that produced it, so reasons show "sensors", not "sens"."""
    out: dict[str, str] = {}
    for word in _WORD.findall(_fold(text)):
        out.setdefault(stem(word), word)
    return out


def statement_similarity(a: Sequence[str], b: Sequence[str], idf: Callable[[str], float]) -> float:
    """Cosine of idf-weighted term sets: rare shared words ("sonar") count, "system" barely does."""
    set_a, set_b = set(a), set(b)
    if not set_a or not set_b:
        return 0.0
    shared = sum(idf(t) ** 2 for t in set_a & set_b)
    norm_a = math.sqrt(sum(idf(t) ** 2 for t in set_a))
    norm_b = math.sqrt(sum(idf(t) ** 2 for t in set_b))
    return min(1.0, shared / (norm_a * norm_b)) if norm_a and norm_b else 0.0


def capability_matches(
    sought: Sequence[tuple[str, list[str]]],
    statements: Sequence[str],
    idf: Callable[[str], float],
    *,
    floor: float = 0.05,
) -> list[CapabilityMatch]:
    """For each sought capability (text, tokens), the company statement answering it best, if any."""
    tokenised = [(s, tokenize(s)) for s in statements]
    out: list[CapabilityMatch] = []
    for need, need_tokens in sought:
        best, best_sim = "", 0.0
        for statement, tokens in tokenised:
            sim = statement_similarity(need_tokens, tokens, idf)
            if sim > best_sim:
                best, best_sim = statement, sim
        if best_sim >= floor:
            out.append(CapabilityMatch(sought=need, capability=best, similarity=round(best_sim, 3)))
    return out


def top_terms(contributions: Mapping[str, float], surface: Mapping[str, str], k: int = 8) -> list[str]:
    """The words that carried the text match; call boilerplate may score a little but explains nothing."""
    useful = ((t, v) for t, v in contributions.items() if v > 0 and t not in BOILERPLATE_STEMS)
    ranked = sorted(useful, key=lambda kv: kv[1], reverse=True)[:k]
    return [surface.get(term, term) for term, _ in ranked]


def summary_line(name: str, domains: Sequence[str], terms: Sequence[str], signals: Mapping[str, float]) -> str:
    """One sentence a programme officer can read without the numbers."""
    parts = []
    if domains:
        parts.append("works in " + ", ".join(domains))
    if terms:
        parts.append("profile mentions " + ", ".join(terms[:4]))
    if signals.get("category", 0.0) > 0:
        parts.append("took part in projects of the same EDF category")
    if signals.get("network", 0.0) > 0.3:
        parts.append("has worked with other top candidates")
    return f"{name}: " + ("; ".join(parts) if parts else "general profile match") + "."
