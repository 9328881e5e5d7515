"""Which needs a target has and whether an organisation answers them — for proposals and real rosters.

A *need* is a sought capability statement when the target lists any (posted projects do), else one
of the target's VISD domains (calls rarely list capabilities, but their category maps to domains).

The matcher judges its proposals with these functions and the consortia service judges an
assembled consortium with them, so "covered" means the same in both. They are pure functions of
what the caller holds: anything shaped like :class:`TargetFacts` and :class:`ProfileFacts` (the
matcher's models, the events' profile data, a service's own read model) will do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.taxonomy_index import TaxonomyIndex
from shared.text import strip_html, tokenize

COVER_THRESHOLD = 0.5
"""Share of a need's content words a member's profile must contain to count as covering it."""


class HistoryFacts(Protocol):
    """One past project of an organisation, as far as coverage reads it."""

    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def topic_id(self) -> str | None: ...


class ProfileFacts(Protocol):
    """What coverage reads of an organisation's profile."""

    @property
    def domains(self) -> Sequence[str]: ...
    @property
    def capabilities(self) -> Sequence[str]: ...
    @property
    def keywords(self) -> Sequence[str]: ...
    @property
    def history(self) -> Sequence[HistoryFacts]: ...


class TargetFacts(Protocol):
    """What coverage reads of a project or call."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def sought_capabilities(self) -> Sequence[str]: ...
    @property
    def domains(self) -> Sequence[str]: ...
    @property
    def edf_category(self) -> str | None: ...


@dataclass(frozen=True)
class Need:
    text: str
    kind: str  # "capability" or "domain"


@dataclass(frozen=True)
class Evidence:
    covered: bool
    detail: str
    similarity: float


def history_text(item: HistoryFacts) -> str:
    return f"{item.title}. {item.summary}"


def target_domains(target: TargetFacts, taxonomy: TaxonomyIndex) -> list[str]:
    domains = [d for d in target.domains if d in taxonomy.domain_keywords]
    category = (target.edf_category or "").upper() or taxonomy.category_of(target.id)
    domains += [d for d in taxonomy.domains_for_category(category) if d not in domains]
    if not domains:
        text = " ".join([target.title, target.summary, strip_html(target.description)])
        domains = taxonomy.infer_domains(text)
    return domains


def needs_of(target: TargetFacts, taxonomy: TaxonomyIndex) -> list[Need]:
    if target.sought_capabilities:
        return [Need(c, "capability") for c in dict.fromkeys(target.sought_capabilities) if c.strip()]
    return [Need(d, "domain") for d in target_domains(target, taxonomy)]


def member_domains(profile: ProfileFacts, taxonomy: TaxonomyIndex) -> dict[str, str]:
    """Domain -> where it comes from (declared, or the category of a past project)."""
    out = {d: "declared domain" for d in profile.domains if d in taxonomy.domain_keywords}
    for item in profile.history:
        category = taxonomy.category_of(item.topic_id)
        for domain in taxonomy.domains_for_category(category):
            out.setdefault(domain, f"{category} project '{item.title}'")
    return out


def covers(need: Need, profile: ProfileFacts, taxonomy: TaxonomyIndex) -> Evidence:
    """Does this profile answer the need? With the statement or project that shows it."""
    if need.kind == "domain":
        source = member_domains(profile, taxonomy).get(need.text)
        if source is not None:
            return Evidence(True, source, 1.0)
        # A domain can also show in what the company says it does.
        hits = taxonomy.keyword_hits(" ".join([*profile.capabilities, *profile.keywords])).get(need.text, [])
        if hits:
            return Evidence(True, "capabilities mention " + ", ".join(hits[:3]), 1.0)
        return Evidence(False, "", 0.0)
    wanted = set(tokenize(need.text))
    if not wanted:
        return Evidence(False, "", 0.0)
    statements = [*profile.capabilities, *profile.keywords, *(history_text(h) for h in profile.history)]
    everything: set[str] = set()
    best, best_share = "", 0.0
    for statement in statements:
        tokens = set(tokenize(statement))
        everything |= tokens
        share = len(wanted & tokens) / len(wanted)
        if share > best_share:
            best, best_share = statement, share
    overall = len(wanted & everything) / len(wanted)
    covered = overall >= COVER_THRESHOLD
    detail = best[:160] if best else ""
    return Evidence(covered, detail, round(max(overall, best_share), 3))
