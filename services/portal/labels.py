"""Labels of taxonomy terms and API values, marked for translation.

The taxonomy stays data (contracts/taxonomy.json): a term added there shows its English label until
its translation is added here and to the catalogue.
"""

from __future__ import annotations

from services.portal.i18n import N_, gettext
from shared.taxonomy import Taxonomy

DOMAIN_LABELS = {
    "maritime": N_("Maritime"),
    "aviation-counter-uas": N_("Aviation & counter-UAS"),
    "space": N_("Space"),
    "artificial-intelligence": N_("Artificial intelligence"),
    "cybersecurity": N_("Cybersecurity"),
    "biotechnology": N_("Biotechnology"),
    "autonomous-systems": N_("Autonomous systems"),
    "energy": N_("Energy"),
    "environment-geo-intelligence": N_("Environment & geo-intelligence"),
}

SIZES = {
    "micro": N_("Micro (< 10 people)"),
    "small": N_("Small (< 50)"),
    "medium": N_("Medium (< 250)"),
    "large": N_("Large"),
}
ORGANISATION_TYPES = {
    "company": N_("Company"),
    "research": N_("Research organisation"),
    "public": N_("Public body"),
    "other": N_("Other"),
}
CALL_STATUSES = {"forthcoming": N_("Forthcoming"), "open": N_("Open"), "closed": N_("Closed")}
PROJECT_STATUSES = {"open": N_("Open"), "closed": N_("Closed")}
ROLES = {
    "institute": N_("Research institute"),
    "company": N_("Company"),
    "integrator": N_("Integrator"),
    "admin": N_("Administrator"),
}
INVITATION_STATUSES = {
    "pending": N_("Waiting for an answer"),
    "accepted": N_("Accepted"),
    "declined": N_("Declined"),
    "withdrawn": N_("Withdrawn"),
    "left": N_("Left"),
    "removed": N_("Removed"),
}
DECLINE_REASONS = {
    "no_capacity": N_("No capacity"),
    "not_our_field": N_("Not our field"),
    "other_consortium": N_("Already in another consortium"),
    "other": N_("Other"),
}
CONSORTIUM_STATUSES = {
    "draft": N_("Draft"),
    "submitted": N_("Submitted"),
    "funded": N_("Funded"),
    "not_funded": N_("Not funded"),
}
RULES = {
    "known_members": N_("Every member is registered"),
    "distinct_members": N_("No organisation twice"),
    "min_entities": N_("Minimum number of organisations"),
    "typical_size": N_("Usual consortium size"),
    "eligible_countries": N_("Members in eligible countries"),
    "one_coordinator": N_("Exactly one coordinator"),
    "min_countries": N_("Minimum number of countries"),
    "independent_entities": N_("Independent organisations"),
    "sme_participation": N_("An SME takes part"),
    "plausible_coordinator": N_("A plausible coordinator"),
    "posting_institute": N_("The posting institute takes part"),
    "research_lead": N_("Led by a research organisation"),
    "research_partner": N_("A research organisation takes part"),
    "single_company": N_("One company applies alone"),
    "belgian_applicant": N_("Applicant established in Flanders"),
    "needs_covered": N_("Every need is covered"),
}
EMAIL_MODES = {"immediate": N_("Immediately, one e-mail per alert"), "digest": N_("Once a day, one digest")}


def domain_label(slug: str, taxonomy: Taxonomy | None = None) -> str:
    if slug in DOMAIN_LABELS:
        return gettext(DOMAIN_LABELS[slug])
    if taxonomy is not None:
        for domain in taxonomy.domains:
            if domain.slug == slug:
                return domain.label
    return slug


def label(mapping: dict[str, str], value: str | None) -> str:
    if value is None:
        return ""
    return gettext(mapping[value]) if value in mapping else value


def options(mapping: dict[str, str]) -> list[tuple[str, str]]:
    return [(value, gettext(text)) for value, text in mapping.items()]


def domain_options(taxonomy: Taxonomy) -> list[tuple[str, str]]:
    return [(d.slug, domain_label(d.slug, taxonomy)) for d in taxonomy.domains]


def programme_options(taxonomy: Taxonomy) -> list[tuple[str, str]]:
    return [(p.code, f"{p.code} — {p.label}") for p in taxonomy.programmes]
