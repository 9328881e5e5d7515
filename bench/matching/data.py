"""The EDF benchmark data: funded projects turned into targets, organisations into profiles.

The file is read from a configurable path and never copied into the repository. An organisation's
profile is built only from the projects passed in (the benchmark passes every project except the one
being predicted), so nothing about the predicted consortium leaks into a profile.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.matching.matcher import CompanyProfile, ProjectHistory, Target
from services.matching.matcher.features import LEGAL_FORMS
from shared.taxonomy import normalise_country
from shared.taxonomy_index import TaxonomyIndex
from shared.text import fold, strip_html

DATA_ENV = "BONDGENOOT_EDF_DATA"
DEFAULT_RELATIVE = Path("..") / "shared" / "data" / "edf" / "edf_calls.json"

# Portal participant types (EU "type" codes) to Bondgenoot organisation types.
ORG_TYPES = {"PRC": "company", "REC": "research", "HES": "research", "PUB": "public", "OTH": "other"}

# Defence groups whose subsidiaries appear under their own PICs. The file has no ownership data, so
# the benchmark infers the control group from these well-known name prefixes (for the EDF
# independence rule); every other organisation is its own group.
GROUP_PREFIXES = (
    "AIRBUS",
    "BAE SYSTEMS",
    "DIEHL",
    "FINCANTIERI",
    "HENSOLDT",
    "INDRA",
    "KNDS",
    "KONGSBERG",
    "LEONARDO",
    "MBDA",
    "NAVAL GROUP",
    "NAMMO",
    "RHEINMETALL",
    "SAAB",
    "SAFRAN",
    "THALES",
    "TKMS",
)


def resolve_path(cli: str | None) -> Path:
    """CLI argument, then env BONDGENOOT_EDF_DATA, then ../shared/data/edf/edf_calls.json from the repo."""
    if cli:
        return Path(cli)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    root = Path(__file__).resolve().parents[2]
    return (root / DEFAULT_RELATIVE).resolve()


@dataclass(frozen=True)
class Participant:
    pic: str
    name: str
    country: str
    city: str
    org_type: str
    sme: bool
    role: str


@dataclass(frozen=True)
class Project:
    topic_id: str
    project_id: str
    acronym: str
    title: str
    objective: str
    participants: tuple[Participant, ...]

    @property
    def pics(self) -> frozenset[str]:
        return frozenset(p.pic for p in self.participants)

    @property
    def coordinators(self) -> frozenset[str]:
        return frozenset(p.pic for p in self.participants if p.role.lower() == "coordinator")


@dataclass
class Dataset:
    topics: dict[str, dict[str, Any]]
    projects: list[Project] = field(default_factory=list)

    def eval_projects(self, prefix: str) -> list[Project]:
        return [p for p in self.projects if p.topic_id.startswith(prefix)]

    def earlier_than(self, year: int) -> list[Project]:
        """Projects of topics of call years before ``year``: what the platform knew when a call of ``year`` opened."""
        return [p for p in self.projects if (y := year_of(p.topic_id)) is not None and y < year]

    def has_description(self, project: Project) -> bool:
        """Whether the file holds the topic's description (else the query is its title only)."""
        return bool(str(self.topics.get(project.topic_id, {}).get("description") or "").strip())


def load(path: Path) -> Dataset:
    with path.open(encoding="utf-8") as handle:
        calls: dict[str, dict[str, Any]] = json.load(handle)["calls"]
    data = Dataset(topics=calls)
    for topic_id, topic in sorted(calls.items()):
        for raw in topic.get("projects") or []:
            participants = tuple(
                Participant(
                    pic=str(p.get("pic") or p.get("organization_name")),
                    name=str(p.get("organization_name") or ""),
                    country=normalise_country(str(p.get("country_code") or "")),
                    city=str(p.get("city") or ""),
                    org_type=ORG_TYPES.get(str(p.get("type") or ""), "other"),
                    sme=bool(p.get("sme")),
                    role=str(p.get("role") or "participant"),
                )
                for p in raw.get("participants") or []
            )
            data.projects.append(
                Project(
                    topic_id=topic_id,
                    project_id=str(raw.get("project_id")),
                    acronym=str(raw.get("acronym") or ""),
                    title=str(raw.get("title") or ""),
                    objective=str(raw.get("objective") or ""),
                    participants=participants,
                )
            )
    return data


def load_or_report(cli: str | None) -> Dataset | None:
    """The dataset from ``resolve_path(cli)``; when absent, say where it was looked for and return None.

    Both benchmark CLIs then exit 2 with ``{"error": "data not found", ...}`` as their last line.
    """
    path = resolve_path(cli)
    if not path.is_file():
        print(f"EDF data not found at {path}: pass --data or set {DATA_ENV}", file=sys.stderr)
        print(json.dumps({"error": "data not found", "path": str(path)}))
        return None
    return load(path)


def group_of(name: str) -> str | None:
    upper = name.upper()
    return next((g for g in GROUP_PREFIXES if upper.startswith(g)), None)


# First words that name a kind of organisation, not an owner: universities, institutes, foundations,
# ministries, "national", "space", ... in the languages of the file. An organisation whose name starts
# with one of them is its own group.
GENERIC_FIRST_WORDS = frozenset(
    """academia academie academy accademia agence agencia agency akademia aristotle association bundesamt
    bundesministerium centre center centro centrum cnr commissariat consiglio consorzio cyber defence
    defense deutsches ecole ethniko ethnicon european fondazione fraunhofer fundacao fundacio fundacion
    fundacja german hellenic idryma institut institute instituto instytut istituto kentro military
    ministere ministerio ministero ministry national nationale naval netherlands osrodek panepistimio
    politechnika politecnico polytechnion royal siec societe space stichting technical technische
    technologies the universidad universidade universita universitaet universitat universite
    universiteit university univerza univerzita uniwersytet ustav vysoke wojskowa wojskowy""".split()
)
_LEADING_FORMS = frozenset({"sia", "uab", "as", "oy", "ab", "sa", "ooo", "zao"})
_NAME_WORD = re.compile(r"[a-z0-9]+")


def brand_of(name: str) -> str | None:
    """Proxy for the control group from the name alone: the first distinctive word ("THALES LAS
    FRANCE SAS" and "THALES SIX GTS FRANCE SAS" -> "THALES"), after legal forms.

    The file has no ownership data; a registered profile carries ``parent_group``, which the platform
    uses instead. A brand shared by only one organisation changes nothing: that organisation is its
    own group. Generic first words (``GENERIC_FIRST_WORDS``) and words of fewer than 3 letters give no
    brand, so universities or "SPACE …" companies are not lumped together.
    """
    known = group_of(name)
    if known is not None:
        return known
    words = [w for w in _NAME_WORD.findall(fold(name)) if w not in LEGAL_FORMS]
    while words and words[0] in _LEADING_FORMS:
        words = words[1:]
    if not words or len(words[0]) < 3 or words[0] in GENERIC_FIRST_WORDS or words[0].isdigit():
        return None
    return words[0].upper()


def year_of(topic_id: str) -> int | None:
    parts = topic_id.split("-")
    return next((int(p) for p in parts[1:3] if p.isdigit() and len(p) == 4), None)


TOPIC_ID = re.compile(r"\bEDF-20\d\d-[A-Z0-9]+(?:-[A-Z0-9]+)*")


def topic_code(topic_id: str) -> str:
    """The code a topic keeps from one call year to the next: the id's last part ("…-SME-NT": two)."""
    parts = topic_id.split("-")
    return "-".join(parts[-2:]) if parts[-1] == "NT" and len(parts) > 2 else parts[-1]


def topic_kind(topic_id: str) -> str:
    """SME, SMERO, DIS, CHALLENGE (the small lump-sum kinds; EDF-2021 "OPEN" topics are SME calls) or OTHER."""
    parts = set(topic_id.split("-"))
    for kind in ("SMERO", "SME", "DIS", "CHALLENGE"):
        if kind in parts:
            return kind
    return "OTHER" if "OPEN" not in parts else "SME"


def named_topics(description: str) -> set[str]:
    """Topic ids of earlier EDF calls that a call text names (its predecessors, usually)."""
    return set(TOPIC_ID.findall(description))


def subject(topic_id: str) -> str:
    """What the call tells about the work: "non-thematic" (…-NT: any subject), "challenge", or "thematic"."""
    if topic_id.endswith("-NT"):
        return "non-thematic"
    return "challenge" if "-CHALLENGE-" in topic_id else "thematic"


def profiles_from(projects: Iterable[Project], data: Dataset, taxonomy: TaxonomyIndex) -> dict[str, CompanyProfile]:
    """One profile per organisation, from exactly these projects (titles, objectives, topics, partners)."""
    history: dict[str, list[ProjectHistory]] = defaultdict(list)
    latest: dict[str, Participant] = {}
    topics: dict[str, list[str]] = defaultdict(list)
    for project in projects:
        topic_title = str(data.topics.get(project.topic_id, {}).get("title") or "")
        for member in project.participants:
            latest[member.pic] = member
            if topic_title and topic_title not in topics[member.pic]:
                topics[member.pic].append(topic_title)
            history[member.pic].append(
                ProjectHistory(
                    programme=project.topic_id.split("-")[0],
                    year=year_of(project.topic_id),
                    title=f"{project.acronym}: {project.title}" if project.acronym else project.title,
                    summary=project.objective,
                    topic_id=project.topic_id,
                    role=member.role,
                    partners=[p.pic for p in project.participants if p.pic != member.pic],
                )
            )
    out: dict[str, CompanyProfile] = {}
    for pic, items in history.items():
        who = latest[pic]
        domains = sorted({d for h in items for d in taxonomy.domains_for_category(taxonomy.category_of(h.topic_id))})
        out[pic] = CompanyProfile(
            id=pic,
            name=who.name,
            country=who.country,
            city=who.city,
            organisation_type=who.org_type,  # type: ignore[arg-type]
            size="small" if who.sme else "large",
            domains=domains,
            capabilities=topics[pic],
            keywords=[],
            parent_group=brand_of(who.name),
            pic=pic,
            history=items,
        )
    return out


def target_for(project: Project, data: Dataset, taxonomy: TaxonomyIndex) -> Target:
    """The topic as the platform would see the call: title + description (HTML stripped)."""
    topic = data.topics.get(project.topic_id, {})
    parts = project.topic_id.split("-")
    action = next((p for p in parts[2:4] if p in {"RA", "DA", "LS", "FPA", "CSA"}), None)
    return Target(
        target_type="call",
        id=project.topic_id,
        title=str(topic.get("title") or project.topic_id),
        programme="EDF",
        description=strip_html(str(topic.get("description") or "")),
        edf_category=taxonomy.category_of(project.topic_id),
        action_type=action,
    )


def others(projects: Sequence[Project], held_out: Project) -> list[Project]:
    return [p for p in projects if p is not held_out]
