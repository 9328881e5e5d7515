"""Dense per-company columns (one row per company) kept as growable numpy arrays.

Eligibility is precomputed here as one boolean column per programme, so ranking starts from a
mask instead of checking 100k countries in Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from services.matching.matcher.eligibility import PROGRAMMES, CountryRule
from services.matching.matcher.features import ProfileFeatures
from services.matching.matcher.index import _grow
from services.matching.matcher.models import CompanyProfile
from shared.taxonomy import normalise_country
from shared.taxonomy_index import TaxonomyIndex

ORG_TYPES: tuple[str, ...] = ("company", "research", "public", "other")


class ProfileStore:
    def __init__(self, taxonomy: TaxonomyIndex, rules: dict[str, CountryRule]) -> None:
        self.domains = list(taxonomy.domains)
        self.domain_col = {d: i for i, d in enumerate(self.domains)}
        self.categories = list(taxonomy.categories)
        self.category_col = {c: i for i, c in enumerate(self.categories)}
        self.rules = rules
        self.n_rows = 0
        self.alive = np.zeros(0, dtype=bool)
        self.eligible: dict[str, npt.NDArray[np.bool_]] = {p: np.zeros(0, dtype=bool) for p in PROGRAMMES}
        self.org_type = np.zeros(0, dtype=np.int8)
        self.sme = np.zeros(0, dtype=bool)
        self.projects = np.zeros(0, dtype=np.float64)
        self.coordinated = np.zeros(0, dtype=np.float64)
        self.domain_bits = np.zeros((0, len(self.domains)), dtype=bool)
        self.category_counts = np.zeros((0, len(self.categories)), dtype=np.float32)
        self.ids: list[str] = []
        self.names: list[str] = []
        self.countries: list[str] = []

    def allocate(self, company_id: str) -> int:
        row = self.n_rows
        self.n_rows += 1
        self.ids.append(company_id)
        self.names.append("")
        self.countries.append("")
        size = self.n_rows
        self.alive = _grow(self.alive, size)  # type: ignore[assignment]
        for programme in PROGRAMMES:
            self.eligible[programme] = _grow(self.eligible[programme], size)  # type: ignore[assignment]
        self.org_type = _grow(self.org_type, size)  # type: ignore[assignment]
        self.sme = _grow(self.sme, size)  # type: ignore[assignment]
        self.projects = _grow(self.projects, size)  # type: ignore[assignment]
        self.coordinated = _grow(self.coordinated, size)  # type: ignore[assignment]
        self.domain_bits = _grow(self.domain_bits, size)  # type: ignore[assignment]
        self.category_counts = _grow(self.category_counts, size)  # type: ignore[assignment]
        return row

    def set_row(self, row: int, profile: CompanyProfile, features: ProfileFeatures) -> None:
        country = normalise_country(profile.country)
        self.alive[row] = True
        self.names[row] = profile.name
        self.countries[row] = country
        for programme in PROGRAMMES:
            self.eligible[programme][row] = self.rules[programme].accepts(country)
        self.org_type[row] = ORG_TYPES.index(profile.organisation_type)
        self.sme[row] = profile.is_sme
        self.projects[row] = features.projects
        self.coordinated[row] = features.coordinated
        self.domain_bits[row] = False
        for domain in features.domains:
            self.domain_bits[row, self.domain_col[domain]] = True
        self.category_counts[row] = 0.0
        for category, count in features.categories.items():
            col = self.category_col.get(category)
            if col is not None:
                self.category_counts[row, col] = count

    def clear_row(self, row: int) -> None:
        self.alive[row] = False
        for programme in PROGRAMMES:
            self.eligible[programme][row] = False

    def mask(self, programme: str) -> npt.NDArray[np.bool_]:
        n = self.n_rows
        return self.alive[:n] & self.eligible.get(programme, self.eligible["OTHER"])[:n]

    def eligible_row(self, row: int, programme: str) -> bool:
        """``mask(programme)[row]`` without building the whole mask."""
        return bool(self.alive[row] and self.eligible.get(programme, self.eligible["OTHER"])[row])

    def memory_bytes(self) -> int:
        arrays = [self.alive, self.org_type, self.sme, self.projects, self.coordinated, self.domain_bits]
        arrays += [self.category_counts, *self.eligible.values()]
        return sum(a.nbytes for a in arrays) + 100 * self.n_rows  # lists of strings, roughly
