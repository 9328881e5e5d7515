"""Keyword-based domain classification of calls, on the shared taxonomy (:mod:`shared.taxonomy`).

The file is found, read and validated by ``shared.taxonomy``; this module adds only what the calls
service needs: whole-word keyword scoring with the category mapping (:meth:`Taxonomy.classify`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared import taxonomy as shared_taxonomy
from shared.taxonomy import TAXONOMY_ENV, Domain, EdfCategory, TaxonomyError

__all__ = [
    "CATEGORY_WEIGHT",
    "MIN_KEYWORD_HITS",
    "TAXONOMY_ENV",
    "Domain",
    "DomainScore",
    "EdfCategory",
    "Taxonomy",
    "TaxonomyError",
    "default_taxonomy_path",
    "from_shared",
    "load_taxonomy",
    "parse_taxonomy",
]

MIN_KEYWORD_HITS = 2
"""Distinct keywords a domain needs when the EDF category does not map to it already."""

CATEGORY_WEIGHT = 3
"""Strength a category mapping adds: the portal's own categorisation outweighs a keyword or two."""


@dataclass(frozen=True)
class DomainScore:
    """Why a domain was assigned: category mapping and the keywords found."""

    slug: str
    from_category: bool
    keywords: tuple[str, ...]
    occurrences: int

    @property
    def strength(self) -> int:
        """Category weight plus one per distinct keyword."""
        return (CATEGORY_WEIGHT if self.from_category else 0) + len(self.keywords)

    @property
    def meaningful(self) -> bool:
        """A single incidental keyword ("port", "power") is not enough to tag a call."""
        return self.from_category or len(self.keywords) >= MIN_KEYWORD_HITS


@dataclass(frozen=True)
class Taxonomy:
    """Domains and EDF categories, with the keyword patterns compiled once."""

    domains: tuple[Domain, ...]
    categories: tuple[EdfCategory, ...]
    programmes: tuple[str, ...] = ()
    _patterns: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        by_keyword: dict[str, list[str]] = {}
        for domain in self.domains:
            for keyword in domain.keywords:
                slugs = by_keyword.setdefault(keyword.lower(), [])
                if domain.slug not in slugs:
                    slugs.append(domain.slug)
        # Longest keywords first so "mine countermeasures" claims its words before "countermeasure".
        ordered = sorted(by_keyword, key=lambda k: (-len(k), k))
        patterns = tuple((kw, tuple(by_keyword[kw]), _keyword_pattern(kw)) for kw in ordered)
        object.__setattr__(self, "_patterns", patterns)

    @property
    def category_codes(self) -> frozenset[str]:
        """All EDF category codes, upper case."""
        return frozenset(c.code.upper() for c in self.categories)

    def category(self, code: str) -> EdfCategory | None:
        """Look up an EDF category by code (case-insensitive)."""
        wanted = code.upper()
        return next((c for c in self.categories if c.code.upper() == wanted), None)

    def score_domains(self, texts: Iterable[str], category: str | None = None) -> list[DomainScore]:
        """Score every domain that has any signal, strongest first (ties by slug, so deterministic)."""
        text = "\n".join(t for t in texts if t)
        claimed: list[tuple[int, int]] = []
        hits: dict[str, set[str]] = {}
        occurrences: dict[str, int] = {}
        for keyword, slugs, pattern in self._patterns:
            spans = [m.span() for m in pattern.finditer(text)]
            # A span already matched by a longer keyword belongs to that keyword, not to this one.
            free = [s for s in spans if not any(s[0] < e and b < s[1] for b, e in claimed)]
            if not free:
                continue
            claimed.extend(free)
            for slug in slugs:
                hits.setdefault(slug, set()).add(keyword)
                occurrences[slug] = occurrences.get(slug, 0) + len(free)
        mapped: set[str] = set()
        if category is not None and (cat := self.category(category)) is not None:
            mapped = set(cat.domains)
        scores = [
            DomainScore(
                slug=d.slug,
                from_category=d.slug in mapped,
                keywords=tuple(sorted(hits.get(d.slug, ()))),
                occurrences=occurrences.get(d.slug, 0),
            )
            for d in self.domains
            if d.slug in mapped or d.slug in hits
        ]
        scores.sort(key=lambda s: (-s.strength, -s.occurrences, s.slug))
        return scores

    def classify(self, texts: Iterable[str], category: str | None = None) -> list[str]:
        """Domain slugs with a meaningful signal, strongest first."""
        return [s.slug for s in self.score_domains(texts, category) if s.meaningful]


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive match, tolerating a plural "s"/"es" ("drones", "sensors")."""
    words = [re.escape(w) for w in keyword.split()]
    body = r"[\s\-]+".join(words)
    return re.compile(rf"(?<!\w){body}(?:s|es)?(?!\w)", re.IGNORECASE)


def from_shared(base: shared_taxonomy.Taxonomy) -> Taxonomy:
    """The calls view (compiled keyword patterns) of a parsed shared taxonomy."""
    return Taxonomy(domains=base.domains, categories=base.categories, programmes=tuple(p.code for p in base.programmes))


def parse_taxonomy(data: Mapping[str, Any]) -> Taxonomy:
    """Build a Taxonomy from the decoded JSON document (raises TaxonomyError on a bad shape)."""
    return from_shared(shared_taxonomy.parse_taxonomy(data))


def default_taxonomy_path() -> Path:
    """$BONDGENOOT_TAXONOMY, else contracts/taxonomy.json (resolved by shared.taxonomy)."""
    return shared_taxonomy.taxonomy_path()


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Read and parse a taxonomy file; the default one (via shared.taxonomy) is cached."""
    if path is None:
        return _view(shared_taxonomy.load_taxonomy())
    return from_shared(shared_taxonomy.read_taxonomy(path))


@lru_cache(maxsize=4)
def _view(base: shared_taxonomy.Taxonomy) -> Taxonomy:
    return from_shared(base)
