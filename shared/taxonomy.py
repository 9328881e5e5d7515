"""The VISD/EDF taxonomy, kept as data in ``contracts/taxonomy.json`` (new terms need no code).

This is the one place that finds, reads, validates and caches the file. It exposes the facts every
service shares: domains with their keywords, EDF categories mapped to domains, programmes with the
countries they accept, and named country groups. Services build their own views on the parsed
:class:`Taxonomy` (the calls service's keyword scoring, the matcher's lookup tables) and never read
the file themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

TAXONOMY_ENV = "BONDGENOOT_TAXONOMY"
"""Environment variable that overrides where taxonomy.json is read from."""

DEFAULT_PATH = REPO_ROOT / "contracts" / "taxonomy.json"

# The EU and the portal write Greece as EL and the United Kingdom as UK; the taxonomy uses ISO codes.
COUNTRY_ALIASES: dict[str, str] = {"EL": "GR", "UK": "GB"}


def normalise_country(code: str) -> str:
    """Upper-case ISO 3166-1 alpha-2, with the EU's EL/UK spelled GR/GB."""
    upper = code.strip().upper()
    return COUNTRY_ALIASES.get(upper, upper)


class TaxonomyError(ValueError):
    """The taxonomy file is missing, unreadable or does not have the expected shape."""


class TaxonomyNotFoundError(TaxonomyError, FileNotFoundError):
    """No taxonomy file where one was expected (also a FileNotFoundError)."""


@dataclass(frozen=True)
class Domain:
    """One VISD domain with the keywords that signal it."""

    slug: str
    label: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class EdfCategory:
    """An EDF category as coded in topic identifiers, mapped to VISD domains."""

    code: str
    label: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class Programme:
    """A funding programme and its country rule ("ANY", "EU+NO", a group name or "BE,NL")."""

    code: str
    label: str
    eligible_countries: str


def resolve_countries(rule: str, groups: Mapping[str, frozenset[str]]) -> frozenset[str] | None:
    """The countries a programme's country rule stands for; None means any country."""
    if rule == "ANY":
        return None
    if rule == "EU+NO":
        return groups["EU"] | groups["EDF_ASSOCIATED"]
    if rule in groups:
        return groups[rule]
    return frozenset(rule.split(","))


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """The parsed taxonomy document. Compared and hashed by identity, so views can be cached on it."""

    raw: dict[str, Any]
    domains: tuple[Domain, ...]
    categories: tuple[EdfCategory, ...]
    programmes: tuple[Programme, ...]
    country_groups: Mapping[str, frozenset[str]]

    @property
    def domain_slugs(self) -> frozenset[str]:
        return frozenset(d.slug for d in self.domains)

    @property
    def programme_codes(self) -> frozenset[str]:
        return frozenset(p.code for p in self.programmes)

    @property
    def edf_category_codes(self) -> frozenset[str]:
        return frozenset(c.code for c in self.categories)

    def country_group(self, name: str) -> frozenset[str]:
        return self.country_groups[name]

    def domains_for_category(self, code: str) -> list[str]:
        for c in self.categories:
            if c.code == code:
                return list(c.domains)
        return []

    def programme_rule(self, programme: str) -> str:
        """The raw country rule of a programme; an unknown programme accepts any country."""
        return next((p.eligible_countries for p in self.programmes if p.code == programme), "ANY")

    def eligible_countries(self, programme: str) -> frozenset[str] | None:
        """The countries a programme accepts; None means any country."""
        return resolve_countries(self.programme_rule(programme), self.country_groups)


def parse_taxonomy(data: Mapping[str, Any]) -> Taxonomy:
    """Build a Taxonomy from the decoded JSON document, checking its shape."""
    try:
        domains = tuple(
            Domain(slug=str(d["slug"]), label=str(d.get("label", d["slug"])), keywords=tuple(d["keywords"]))
            for d in data["domains"]
        )
        categories = tuple(
            EdfCategory(code=str(c["code"]), label=str(c.get("label", c["code"])), domains=tuple(c["domains"]))
            for c in data["edf_categories"]
        )
        programmes = tuple(
            Programme(
                code=str(p["code"]),
                label=str(p.get("label", p["code"])),
                eligible_countries=str(p.get("eligible_countries", "ANY")),
            )
            for p in data.get("programmes", [])
        )
        groups = {
            str(name): frozenset(normalise_country(c) for c in codes)
            for name, codes in data.get("country_groups", {}).items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise TaxonomyError(f"taxonomy has an unexpected shape: {exc!r}") from exc
    slugs = {d.slug for d in domains}
    for cat in categories:
        unknown = set(cat.domains) - slugs
        if unknown:
            raise TaxonomyError(f"EDF category {cat.code} maps to unknown domains {sorted(unknown)}")
    return Taxonomy(
        raw=dict(data), domains=domains, categories=categories, programmes=programmes, country_groups=groups
    )


def taxonomy_path(path: Path | str | None = None) -> Path:
    """``path``, else $BONDGENOOT_TAXONOMY, else contracts/ beside this package (or above the cwd)."""
    if path:
        return Path(path)
    override = os.environ.get(TAXONOMY_ENV)
    if override:
        return Path(override)
    if DEFAULT_PATH.is_file():
        return DEFAULT_PATH
    cwd = Path.cwd().resolve()
    for parent in (cwd, *cwd.parents):
        candidate = parent / "contracts" / "taxonomy.json"
        if candidate.is_file():
            return candidate
    return DEFAULT_PATH


def read_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Read and parse a taxonomy file, uncached (see :func:`load_taxonomy`)."""
    resolved = taxonomy_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TaxonomyNotFoundError(f"taxonomy.json not found at {resolved} (set {TAXONOMY_ENV})") from exc
    except OSError as exc:
        raise TaxonomyError(f"cannot read taxonomy {resolved}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TaxonomyError(f"cannot read taxonomy {resolved}: {exc}") from exc
    return parse_taxonomy(data)


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """The taxonomy at ``path`` / $BONDGENOOT_TAXONOMY / contracts/taxonomy.json, read once per file."""
    return _cached(taxonomy_path(path).resolve())


@lru_cache(maxsize=4)
def _cached(path: Path) -> Taxonomy:
    return read_taxonomy(path)
