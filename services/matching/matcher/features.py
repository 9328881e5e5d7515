"""What the matcher derives from one profile: text terms, identity keys, partners, track record.

Pure functions of a single ``CompanyProfile`` so an upsert only touches that company's rows.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from services.matching.matcher.models import CompanyProfile
from shared.consortium_rules import COORDINATOR_ROLES
from shared.coverage import history_text
from shared.taxonomy_index import TaxonomyIndex
from shared.text import fold, tokenize

# Legal-form words dropped when comparing organisation names ("THALES SA" is "Thales").
LEGAL_FORMS = frozenset(
    "sa spa sas sarl srl sl slu gmbh mbh ag kg bv nv ab as asa oy oyj ltd limited plc inc llc aps sro zrt ou "
    "uab as ae ike ee se co kft doo bvba cvba vzw asbl ev spzoo".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def normalise_key(raw: str) -> str:
    """Identity key for a partner reference: a PIC (digits) or a folded organisation name."""
    text = raw.strip()
    if text.isdigit():
        return f"pic:{text}"
    words = [w for w in _WORD.findall(fold(text)) if w not in LEGAL_FORMS]
    return "name:" + " ".join(words) if words else ""


def own_keys(profile: CompanyProfile) -> list[str]:
    keys = [f"id:{profile.id}", normalise_key(profile.name)]
    if profile.pic:
        keys.append(normalise_key(profile.pic))
    return [k for k in dict.fromkeys(keys) if k]


def profile_statements(profile: CompanyProfile) -> list[str]:
    """Readable statements a match can be explained with: capabilities first, then past projects."""
    out = [c for c in profile.capabilities if c.strip()]
    out += [h.title for h in profile.history if h.title.strip()]
    return list(dict.fromkeys(out))


def profile_text(profile: CompanyProfile) -> str:
    """All the profile's text in one string: what the plain BM25 baseline indexes."""
    parts = [*profile.capabilities, *profile.keywords, *(history_text(h) for h in profile.history)]
    return "\n".join(p for p in parts if p)


@dataclass
class ProfileFeatures:
    """Everything the index stores for one company."""

    terms: Counter[str]
    own_keys: list[str]
    partners: Counter[str]
    categories: Counter[str]
    domains: set[str]
    projects: int
    coordinated: int
    programmes: Counter[str] = field(default_factory=Counter)
    category_topics: dict[str, list[str]] = field(default_factory=dict)  # category -> topic ids, for reasons


def extract(profile: CompanyProfile, taxonomy: TaxonomyIndex, *, statement_weight: int = 2) -> ProfileFeatures:
    """Derive the index features of a profile.

    Capability statements and keywords are the company's own words about what it does, so they count
    ``statement_weight`` times; project history is evidence but also carries each project's general
    framing, so it counts once.
    """
    terms: Counter[str] = Counter()
    for text in (*profile.capabilities, *profile.keywords):
        for token in tokenize(text):
            terms[token] += statement_weight
    for item in profile.history:
        terms.update(tokenize(history_text(item)))
    partners: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    programmes: Counter[str] = Counter()
    category_topics: dict[str, list[str]] = {}
    coordinated = 0
    mine = set(own_keys(profile))
    for item in profile.history:
        programmes[item.programme.upper()] += 1
        category = taxonomy.category_of(item.topic_id)
        if category:
            categories[category] += 1
            topics = category_topics.setdefault(category, [])
            if item.topic_id and item.topic_id not in topics:
                topics.append(item.topic_id)
        if (item.role or "").lower() in COORDINATOR_ROLES:
            coordinated += 1
        for partner in item.partners:
            key = normalise_key(partner)
            if key and key not in mine:
                partners[key] += 1
    domains = {d for d in profile.domains if d in taxonomy.domain_keywords}
    for category in categories:
        domains.update(taxonomy.domains_for_category(category))
    return ProfileFeatures(
        terms=terms,
        own_keys=own_keys(profile),
        partners=partners,
        categories=categories,
        domains=domains,
        projects=len(profile.history),
        coordinated=coordinated,
        programmes=programmes,
        category_topics=category_topics,
    )
