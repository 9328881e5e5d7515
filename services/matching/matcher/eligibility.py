"""Who may take part in which programme (country of establishment only, as in the brief).

EDF: established in an EU member state or Norway (the only EDF-associated country).
VLAIO, FSDB, DEFRA: Belgian. DIANA: a NATO member. OTHER: anyone.
The country sets come from the programmes in contracts/taxonomy.json (via the taxonomy), so the
rules are data and the matcher can turn them into boolean masks per programme.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.matching.matcher.models import CompanyProfile, Target
from shared.consortium_rules import COUNTRY_LABELS
from shared.taxonomy import normalise_country
from shared.taxonomy_index import TaxonomyIndex

PROGRAMMES: tuple[str, ...] = ("EDF", "VLAIO", "FSDB", "DEFRA", "DIANA", "OTHER")


@dataclass(frozen=True)
class CountryRule:
    """Countries a programme accepts; ``None`` means any country."""

    programme: str
    countries: frozenset[str] | None
    label: str

    def accepts(self, country: str) -> bool:
        return self.countries is None or normalise_country(country) in self.countries


LABELS = COUNTRY_LABELS
"""How an explanation names each programme's accepted countries (shared with the consortium rules)."""


def country_rules(taxonomy: TaxonomyIndex) -> dict[str, CountryRule]:
    return {p: CountryRule(p, taxonomy.eligible_countries(p), LABELS[p]) for p in PROGRAMMES}


def check_eligibility(rules: dict[str, CountryRule], profile: CompanyProfile, target: Target) -> tuple[bool, str]:
    """(eligible?, a sentence saying why) for a company and a target's programme."""
    rule = rules.get(target.programme, rules["OTHER"])
    country = normalise_country(profile.country)
    if rule.countries is None:
        return True, f"{target.programme}: open to organisations from any country"
    if rule.accepts(country):
        return True, f"{target.programme}: established in {country}, which is {rule.label}"
    return False, f"{target.programme}: requires establishment in {rule.label}; {profile.name} is in {country}"
