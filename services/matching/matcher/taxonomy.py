"""The parts of contracts/taxonomy.json the matcher needs: domains, EDF categories, country groups.

Kept separate from the calls service's taxonomy module on purpose: the matcher is a pure library the
benchmark imports without any service code, and it only needs a read-only view.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

TAXONOMY_ENV = "BONDGENOOT_TAXONOMY"

# The EU and the portal write Greece as EL and the United Kingdom as UK; the taxonomy uses ISO codes.
COUNTRY_ALIASES: dict[str, str] = {"EL": "GR", "UK": "GB"}


def normalise_country(code: str) -> str:
    upper = code.strip().upper()
    return COUNTRY_ALIASES.get(upper, upper)


@dataclass(frozen=True)
class Taxonomy:
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


def _default_path() -> Path | None:
    env = os.environ.get(TAXONOMY_ENV)
    if env:
        return Path(env)
    # Walk up from this file, then from the working directory, to the repository's contracts/.
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            candidate = parent / "contracts" / "taxonomy.json"
            if candidate.is_file():
                return candidate
    return None


def taxonomy_from_dict(data: dict[str, Any]) -> Taxonomy:
    domains = {d["slug"]: tuple(k.lower() for k in d.get("keywords", [])) for d in data.get("domains", [])}
    categories = {c["code"].upper(): tuple(c.get("domains", [])) for c in data.get("edf_categories", [])}
    groups = {
        name: frozenset(normalise_country(c) for c in codes) for name, codes in data.get("country_groups", {}).items()
    }
    programmes = {p["code"]: p.get("eligible_countries", "ANY") for p in data.get("programmes", [])}
    return Taxonomy(domains, categories, groups, programmes)


@cache
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Read the taxonomy once per process (path, env BONDGENOOT_TAXONOMY, or the repo's contracts/)."""
    resolved = Path(path) if path else _default_path()
    if resolved is None or not resolved.is_file():
        raise FileNotFoundError(f"taxonomy.json not found (set {TAXONOMY_ENV}); looked at {resolved}")
    with resolved.open(encoding="utf-8") as handle:
        return taxonomy_from_dict(json.load(handle))


def union(groups: Iterable[frozenset[str]]) -> frozenset[str]:
    out: set[str] = set()
    for g in groups:
        out |= g
    return frozenset(out)
