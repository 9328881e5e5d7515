"""The VISD/EDF taxonomy, kept as data in ``contracts/taxonomy.json`` (new terms need no code)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "contracts" / "taxonomy.json"


@dataclass(frozen=True)
class Taxonomy:
    raw: dict[str, Any]

    @property
    def domain_slugs(self) -> frozenset[str]:
        return frozenset(d["slug"] for d in self.raw["domains"])

    @property
    def programme_codes(self) -> frozenset[str]:
        return frozenset(p["code"] for p in self.raw["programmes"])

    @property
    def edf_category_codes(self) -> frozenset[str]:
        return frozenset(c["code"] for c in self.raw["edf_categories"])

    def country_group(self, name: str) -> frozenset[str]:
        return frozenset(self.raw["country_groups"][name])

    def domains_for_category(self, code: str) -> list[str]:
        for c in self.raw["edf_categories"]:
            if c["code"] == code:
                return list(c["domains"])
        return []

    def eligible_countries(self, programme: str) -> frozenset[str] | None:
        """The countries a programme accepts; None means any country."""
        rule = next((p["eligible_countries"] for p in self.raw["programmes"] if p["code"] == programme), "ANY")
        if rule == "ANY":
            return None
        if rule == "EU+NO":
            return self.country_group("EU") | self.country_group("EDF_ASSOCIATED")
        if rule in self.raw["country_groups"]:
            return self.country_group(rule)
        return frozenset(rule.split(","))


@lru_cache(maxsize=4)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Load the taxonomy from BONDGENOOT_TAXONOMY or contracts/taxonomy.json."""
    p = Path(path or os.environ.get("BONDGENOOT_TAXONOMY") or DEFAULT_PATH)
    return Taxonomy(json.loads(p.read_text()))
