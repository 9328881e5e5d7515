"""Synthetic but realistic company registries for the scale benchmark.

Capability statements are built from per-domain templates (technology x application x qualifier)
over every VISD domain, companies get 1-2 domains, countries follow the rough weight of defence
industry per country, and project histories name partners from the same registry, so the text,
the eligibility masks and the partner graph all look like the real thing at any size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from services.matching.matcher import CompanyProfile, ProjectHistory, Target

TECH: dict[str, list[str]] = {
    "maritime": [
        "sonar",
        "hull-mounted sensors",
        "mine countermeasures",
        "naval radar",
        "subsea acoustics",
        "port security",
    ],
    "aviation-counter-uas": [
        "counter-uas",
        "drone detection",
        "air defence radar",
        "avionics",
        "missile seekers",
        "interceptors",
    ],
    "space": ["satellite payloads", "earth observation", "space situational awareness", "gnss receivers", "launchers"],
    "artificial-intelligence": [
        "machine learning",
        "computer vision",
        "data fusion",
        "decision support",
        "natural language",
    ],
    "cybersecurity": [
        "intrusion detection",
        "cryptography",
        "secure communication",
        "malware analysis",
        "zero trust networks",
    ],
    "biotechnology": [
        "cbrn detection",
        "biosensors",
        "decontamination",
        "medical countermeasures",
        "pathogen diagnostics",
    ],
    "autonomous-systems": [
        "unmanned ground vehicles",
        "swarm robotics",
        "autonomous navigation",
        "manned-unmanned teaming",
        "uuv",
    ],
    "energy": ["battery systems", "hydrogen fuel cells", "tactical microgrids", "hybrid propulsion", "energy storage"],
    "environment-geo-intelligence": [
        "hyperspectral imagery",
        "geospatial analytics",
        "terrain mapping",
        "weather sensing",
        "remote sensing",
    ],
}
ACTIVITY = [
    "design of",
    "development of",
    "integration of",
    "testing of",
    "production of",
    "research on",
    "software for",
]
APPLICATION = [
    "for naval platforms",
    "for land forces",
    "for critical infrastructure protection",
    "for border surveillance",
    "for expeditionary operations",
    "in contested environments",
    "for soldier systems",
    "for command and control",
]
CATEGORIES: dict[str, str] = {
    "maritime": "NAVAL",
    "aviation-counter-uas": "AIRDEF",
    "space": "SPACE",
    "artificial-intelligence": "DIGIT",
    "cybersecurity": "CYBER",
    "biotechnology": "MCBRN",
    "autonomous-systems": "GROUND",
    "energy": "ENERENV",
    "environment-geo-intelligence": "SENS",
}
COUNTRIES = (
    ["FR"] * 12 + ["DE"] * 12 + ["IT"] * 10 + ["ES"] * 8 + ["BE"] * 8 + ["NL"] * 6 + ["SE"] * 4 + ["PL"] * 4
    + ["NO"] * 3 + ["FI"] * 3 + ["GR"] * 3 + ["AT"] * 3 + ["PT"] * 2 + ["DK"] * 2 + ["CZ"] * 2 + ["EE", "LT", "LV"]
    + ["RO", "BG", "HR", "SI", "SK", "HU", "IE", "LU", "CY", "MT"] + ["US"] * 4 + ["GB"] * 4 + ["CA", "TR", "CH", "IL"]
)  # fmt: skip
ORG_TYPES = ["company"] * 8 + ["research"] * 2 + ["public", "other"]
SIZES = ["micro"] * 3 + ["small"] * 4 + ["medium"] * 2 + ["large"]
PROGRAMMES = ["EDF", "EDF", "FSDB", "VLAIO", "DIANA", "DEFRA", "OTHER"]


def _statement(rng: random.Random, domain: str) -> str:
    return f"{rng.choice(ACTIVITY)} {rng.choice(TECH[domain])} {rng.choice(APPLICATION)}"


def company(rng: random.Random, index: int, n_total: int) -> CompanyProfile:
    domains = rng.sample(list(TECH), k=rng.choice([1, 1, 2]))
    capabilities = [_statement(rng, rng.choice(domains)) for _ in range(rng.randint(2, 5))]
    keywords = rng.sample([t for d in domains for t in TECH[d]], k=min(4, sum(len(TECH[d]) for d in domains)))
    history = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        domain = rng.choice(domains)
        partners = [f"C{rng.randrange(n_total):06d}" for _ in range(rng.randint(2, 8))]
        history.append(
            ProjectHistory(
                programme="EDF",
                year=rng.randint(2019, 2024),
                title=f"{rng.choice(TECH[domain]).title()} demonstrator",
                summary=_statement(rng, domain) + ". " + _statement(rng, domain) + ".",
                topic_id=f"EDF-{rng.randint(2021, 2024)}-RA-{CATEGORIES[domain]}-X{rng.randint(1, 9)}",
                role=rng.choice(["coordinator"] + ["participant"] * 6),
                partners=partners,
            )
        )
    size = rng.choice(SIZES)
    return CompanyProfile(
        id=f"C{index:06d}",
        name=f"{rng.choice(TECH[domains[0]]).split()[0].title()} Systems {index}",
        country=rng.choice(COUNTRIES),
        city="",
        organisation_type=rng.choice(ORG_TYPES),  # type: ignore[arg-type]
        size=size,  # type: ignore[arg-type]
        domains=domains,
        capabilities=capabilities,
        keywords=keywords,
        parent_group=f"group-{rng.randrange(200)}" if size == "large" and rng.random() < 0.5 else None,
        pic=f"{900000000 + index}",
        history=history,
    )


def companies(n: int, seed: int = 42) -> Iterator[CompanyProfile]:
    rng = random.Random(seed)
    for i in range(n):
        yield company(rng, i, n)


def targets(n: int, seed: int = 7) -> list[Target]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        domains = rng.sample(list(TECH), k=rng.choice([1, 2]))
        sought = [_statement(rng, rng.choice(domains)) for _ in range(rng.randint(2, 4))]
        body = " ".join(_statement(rng, rng.choice(domains)) + "." for _ in range(40))
        programme = rng.choice(PROGRAMMES)
        out.append(
            Target(
                target_type="project" if programme in {"FSDB", "DEFRA"} else "call",
                id=f"T{i:03d}",
                title=f"{rng.choice(TECH[domains[0]]).title()} for {rng.choice(APPLICATION)[4:]}",
                programme=programme,  # type: ignore[arg-type]
                description=body,
                sought_capabilities=sought,
                domains=domains,
                edf_category=CATEGORIES[domains[0]] if programme == "EDF" else None,
                institute="Royal Military Academy" if programme == "FSDB" else None,
                partners_wanted=rng.randint(1, 4),
            )
        )
    return out
