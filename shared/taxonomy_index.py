"""Lookup tables on the shared taxonomy (:mod:`shared.taxonomy`) for ranking and need coverage.

``shared.taxonomy`` finds, reads, validates and caches contracts/taxonomy.json and owns the country
groups, programme country rules and country-code normalisation. This module only reshapes that data
into what hot paths use: slug -> lower-case keywords, upper-case category code -> domains, the EDF
category of a topic id, and whole-word keyword hits per domain. The matcher ranks with it and
:mod:`shared.coverage` judges needs with it, so a proposal and a real roster see the same domains.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared import taxonomy as shared_taxonomy
from shared.taxonomy import COUNTRY_ALIASES, TAXONOMY_ENV, normalise_country, resolve_countries

__all__ = [
    "COUNTRY_ALIASES",
    "TAXONOMY_ENV",
    "TaxonomyIndex",
    "from_shared",
    "load_index",
    "normalise_country",
    "taxonomy_from_dict",
]


@dataclass(frozen=True)
class TaxonomyIndex:
    """Domains with keywords, EDF category codes mapped to domains, and named country groups."""

    domain_keywords: dict[str, tuple[str, ...]]
    category_domains: dict[str, tuple[str, ...]]
    country_groups: dict[str, frozenset[str]]
    programme_countries: dict[str, str] = field(default_factory=dict)
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for slug, words in self.domain_keywords.items():
            # Whole-word match so "ai" does not fire inside "maintain" or "sea" inside "research".
            alternatives = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
            self._patterns[slug] = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.domain_keywords)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.category_domains)

    def group(self, name: str) -> frozenset[str]:
        return self.country_groups.get(name, frozenset())

    def eligible_countries(self, programme: str) -> frozenset[str] | None:
        """Countries the taxonomy lets take part in a programme; None means any (unknown -> any)."""
        return resolve_countries(self.programme_countries.get(programme, "ANY"), self.country_groups)

    def category_of(self, topic_id: str | None) -> str | None:
        """EDF category code in a topic id (EDF-2023-DA-UWW-ASW -> UWW), None if there is none."""
        if not topic_id:
            return None
        segments = [s for s in topic_id.strip().upper().split("-") if s]
        # Skip programme, year and action type; the first known code wins (…-SI-ENERENV-… -> ENERENV).
        return next((s for s in segments[2:] if s in self.category_domains), None)

    def domains_for_category(self, code: str | None) -> tuple[str, ...]:
        return self.category_domains.get((code or "").upper(), ())

    def keyword_hits(self, text: str) -> dict[str, list[str]]:
        """Domain -> distinct keywords found in the text."""
        lowered = text.lower()
        hits: dict[str, list[str]] = {}
        for slug, pattern in self._patterns.items():
            found = sorted(set(pattern.findall(lowered)))
            if found:
                hits[slug] = found
        return hits

    def infer_domains(self, text: str, min_hits: int = 2) -> list[str]:
        """Domains with at least ``min_hits`` distinct keywords: one stray "port" is not maritime."""
        return [slug for slug, words in self.keyword_hits(text).items() if len(words) >= min_hits]


def from_shared(base: shared_taxonomy.Taxonomy) -> TaxonomyIndex:
    """The lookup tables for a parsed shared taxonomy."""
    return TaxonomyIndex(
        domain_keywords={d.slug: tuple(k.lower() for k in d.keywords) for d in base.domains},
        category_domains={c.code.upper(): c.domains for c in base.categories},
        country_groups=dict(base.country_groups),
        programme_countries={p.code: p.eligible_countries for p in base.programmes},
    )


def taxonomy_from_dict(data: Mapping[str, Any]) -> TaxonomyIndex:
    """Build the lookup tables from a decoded taxonomy document (validated by shared.taxonomy)."""
    return from_shared(shared_taxonomy.parse_taxonomy(data))


def load_index(path: str | None = None) -> TaxonomyIndex:
    """The taxonomy, read once per file by shared.taxonomy (path, env BONDGENOOT_TAXONOMY, or contracts/)."""
    return _view(shared_taxonomy.load_taxonomy(path))


@lru_cache(maxsize=4)
def _view(base: shared_taxonomy.Taxonomy) -> TaxonomyIndex:
    return from_shared(base)
