"""Readable reasons for a suggestion: matched domains, capability ↔ need pairs, carrying words.

Only computed for the handful of companies that are returned, so it can afford per-row Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.matching.matcher.models import CapabilityMatch, Reasons, Suggestion, Target
from services.matching.matcher.text import BOILERPLATE_STEMS, target_text
from shared.text import fold, stem, tokenize

if TYPE_CHECKING:
    from services.matching.matcher.matcher import Matcher
    from services.matching.matcher.scoring import TargetState

FloatArray = npt.NDArray[np.float64]

_WORD = re.compile(r"[a-z0-9]+")


def surface_forms(text: str) -> dict[str, str]:
    """Stem -> the first word in the text that produced it, so reasons show "sensors", not "sens"."""
    out: dict[str, str] = {}
    for word in _WORD.findall(fold(text)):
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


def summary_line(name: str, domains: Sequence[str], terms: Sequence[str], evidence: Sequence[str]) -> str:
    """One sentence a programme officer can read without the numbers.

    ``evidence`` holds one phrase per structured signal that contributed (category, network, ...),
    so every part of the score is said in words.
    """
    parts = []
    if domains:
        parts.append("works in " + ", ".join(domains))
    if terms:
        parts.append("profile mentions " + ", ".join(terms[:4]))
    parts += evidence
    return f"{name}: " + ("; ".join(parts) if parts else "general profile match") + "."


def category_phrase(category: str, topics: Sequence[str], shown: int = 2) -> str:
    """ "took part in 3 earlier AIR topics (EDF-2021-AIR-D-EPE, EDF-2022-DA-AIR-AEW, …)"."""
    listed = ", ".join(topics[:shown]) + (", …" if len(topics) > shown else "")
    noun = "topic" if len(topics) == 1 else "topics"
    return f"took part in {len(topics)} earlier {category} {noun} ({listed})"


def network_phrase(partners: Sequence[str], shown: int = 3) -> str:
    """ "worked before with THALES SIX GTS FRANCE SAS and INDRA SISTEMAS SA, also strong candidates"."""
    names = list(partners[:shown])
    if len(partners) > shown:
        names.append(f"{len(partners) - shown} more")
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"worked before with {joined}, also strong candidates"


class Explainer:
    """Per-target facts computed once, then reasons for each returned company."""

    def __init__(self, matcher: Matcher, target: Target, state: TargetState, signals: Mapping[str, FloatArray]) -> None:
        self.m = matcher
        self.target = target
        self.query = state.query
        self.signals = signals
        text = target_text(target)
        self.domains = set(matcher.target_domains(target, text))
        self.category = matcher.target_category(target)
        self.surface = surface_forms(text + " " + " ".join(target.sought_capabilities))
        needs = target.sought_capabilities or [target.title]
        self.needs = [(n, tokenize(n)) for n in needs]
        self._idf: dict[str, float] = {}
        # Row -> the second-stage seeds it has worked with, strongest seed first.
        self.partners: dict[int, list[str]] = {}
        for seed, _ in sorted(state.seeds.items(), key=lambda kv: -kv[1]):
            for row in matcher.graph.neighbours(seed):
                self.partners.setdefault(row, []).append(matcher.store.names[seed])

    def idf(self, term: str) -> float:
        found = self._idf.get(term)
        if found is None:
            found = self._idf[term] = self.m.idf(term)
        return found

    def evidence(self, row: int, values: Mapping[str, float]) -> list[str]:
        """A phrase for each structured signal that contributed to this row's score."""
        out: list[str] = []
        topics = self.m.category_topics[row].get(self.category or "", [])
        if values.get("category", 0.0) > 0 and self.category and topics:
            out.append(category_phrase(self.category, topics))
        if values.get("network", 0.0) > 0 and self.partners.get(row):
            out.append(network_phrase(self.partners[row]))
        if values.get("experience", 0.0) > 0:
            out.append(f"{int(self.m.store.projects[row])} funded projects before")
        if values.get("coordinator", 0.0) > 0:
            out.append(f"coordinated {int(self.m.store.coordinated[row])} funded projects")
        return out

    def suggestion(self, row: int, rank: int, score: float) -> Suggestion:
        m, store = self.m, self.m.store
        domains = sorted(self.domains & m.domain_sets[row])
        contributions = m.terms.row_contributions(row, self.query)
        terms = top_terms(contributions, self.surface)
        matches = capability_matches(self.needs, m.statements[row], self.idf)
        values = {name: round(float(v[row]), 4) for name, v in self.signals.items()}
        name = store.names[row]
        rule = m.rules.get(self.target.programme, m.rules["OTHER"])
        why = (
            f"{self.target.programme}: open to organisations from any country"
            if rule.countries is None
            else f"{self.target.programme}: established in {store.countries[row]}, which is {rule.label}"
        )
        return Suggestion(
            company_id=store.ids[row],
            company_name=name,
            country=store.countries[row],
            rank=rank,
            score=round(min(1.0, max(0.0, score)), 6),
            reasons=Reasons(
                matched_domains=domains,
                capability_matches=matches,
                top_terms=terms,
                signals=values,
                eligibility=why,
                summary=summary_line(name, domains, terms, self.evidence(row, values)),
            ),
        )
