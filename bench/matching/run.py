"""Run the EDF benchmark: plain BM25 and the platform's Matcher, same candidates, same run.

Two protocols decide what the platform is allowed to know about a funded project of the evaluated
call year Y:

temporal (default)  candidates and every profile come only from projects of topics of call years
                    before Y — what the platform knew when the call opened. Same-year co-winners
                    are not history. One index serves every project of the year.
loo                 every organisation of the *other* projects (any year) is a candidate, profiled
                    from those projects. The Matcher is built once and updated per held-out project
                    (its participants re-upserted without it, or removed) — the service's own path.
                    Kept for comparison with the first analysis; it lets same-year and later
                    consortia inform a profile.

Per project and method the harness records recall@10/20/50 over all participants and over those
with a history, nDCG@20, precision@10, coordinator@20, reciprocal rank and the ceiling; summaries
are means over projects (of the projects where a metric is defined).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.matching.baseline import Bm25Baseline
from bench.matching.data import Dataset, Project, others, profiles_from, target_for, year_of
from bench.matching.metrics import (
    hit_at_k,
    mean,
    ndcg_at_k,
    overlap,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from services.matching.matcher import (
    CompanyProfile,
    ConsortiumMember,
    ConsortiumProposal,
    Matcher,
    MatcherConfig,
    Target,
    check_rules,
    propose_consortia,
)
from services.matching.matcher.embeddings import TextEncoder
from shared.taxonomy_index import TaxonomyIndex

KS = (10, 20, 50)
RANK_DEPTH = 60  # suggestions handed to the consortium builder
PROTOCOLS = ("temporal", "loo")
SUBSETS = ("all", "description", "title")


def project_metrics(
    ranked: Sequence[str], truth: frozenset[str], with_history: frozenset[str], coordinators: frozenset[str]
) -> dict[str, float]:
    """Every metric of one ranking against one real consortium (keys absent where undefined)."""
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = recall_at_k(ranked, truth, k)
        if with_history:
            out[f"recall@{k}_hist"] = recall_at_k(ranked, with_history, k)
    out["ndcg@20"] = ndcg_at_k(ranked, truth, 20)
    out["precision@10"] = precision_at_k(ranked, truth, 10)
    if coordinators:
        out["coordinator@20"] = hit_at_k(ranked, coordinators, 20)
    out["mrr"] = reciprocal_rank(ranked, truth)
    out["ceiling"] = len(with_history) / len(truth) if truth else 0.0
    return out


METRICS = (
    "recall@10",
    "recall@20",
    "recall@50",
    "recall@10_hist",
    "recall@20_hist",
    "recall@50_hist",
    "ndcg@20",
    "precision@10",
    "coordinator@20",
    "mrr",
    "ceiling",
)


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, float | None]:
    """Mean of each metric over the projects where it is defined."""
    return {name: mean([r[name] for r in rows if name in r]) for name in METRICS}


@dataclass
class Case:
    """One evaluated project as a protocol presents it."""

    project: Project
    target: Target
    profiles: Mapping[str, CompanyProfile]
    candidates: list[str]  # eligible organisations with a profile, sorted
    described: bool

    @property
    def truth(self) -> frozenset[str]:
        return self.project.pics

    @property
    def with_history(self) -> frozenset[str]:
        return frozenset(self.truth & set(self.candidates))


class CachedEncoder:
    """Memoises embeddings: held-out projects re-upsert the same profile texts over and over."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self._cache: dict[str, npt.NDArray[np.float32]] = {}

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text, vector in zip(missing, self.inner.encode(missing), strict=True):
                self._cache[text] = vector
        return np.stack([self._cache[t] for t in texts])


class Harness:
    """Builds matchers over a set of profiles and walks the evaluated projects under one protocol."""

    def __init__(
        self, data: Dataset, taxonomy: TaxonomyIndex, encoder: TextEncoder | None = None, *, protocol: str = "temporal"
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
        self.data = data
        self.taxonomy = taxonomy
        self.protocol = protocol
        self.encoder = CachedEncoder(encoder) if encoder is not None else None
        self.full = profiles_from(data.projects, data, taxonomy)
        self._history: dict[int, dict[str, CompanyProfile]] = {}

    def history(self, prefix: str) -> dict[str, CompanyProfile]:
        """The profiles a matcher for ``prefix`` starts from: earlier years (temporal) or everything (loo)."""
        if self.protocol == "loo":
            return self.full
        year = year_of(prefix)
        if year is None:
            raise ValueError(f"--eval {prefix!r} names no call year (e.g. EDF-2023): the temporal protocol needs one")
        if year not in self._history:
            self._history[year] = profiles_from(self.data.earlier_than(year), self.data, self.taxonomy)
        return self._history[year]

    def build(self, config: MatcherConfig, prefix: str) -> Matcher:
        matcher = Matcher(config, taxonomy=self.taxonomy, encoder=self.encoder if config.weight("dense") else None)
        for profile in self.history(prefix).values():
            matcher.upsert(profile)
        matcher.compact()
        return matcher

    def cases(self, prefix: str, matchers: Mapping[str, Matcher]) -> Iterator[Case]:
        """Each evaluated project with the profiles and candidates the protocol allows; matchers kept in step."""
        for project in self.data.eval_projects(prefix):
            target = target_for(project, self.data, self.taxonomy)
            if self.protocol == "temporal":
                profiles: Mapping[str, CompanyProfile] = self.history(prefix)
            else:
                profiles = profiles_from(others(self.data.projects, project), self.data, self.taxonomy)
                for matcher in matchers.values():
                    self._hold_out(matcher, project, profiles)
            candidates = sorted(p for p, prof in profiles.items() if _eligible(matchers, prof, target))
            yield Case(project, target, profiles, candidates, self.data.has_description(project))
            if self.protocol == "loo":
                for matcher in matchers.values():
                    for pic in sorted(project.pics):
                        matcher.upsert(self.full[pic])

    @staticmethod
    def _hold_out(matcher: Matcher, project: Project, reduced: Mapping[str, CompanyProfile]) -> None:
        """Bring the matcher to the state without ``project``: only its participants change."""
        for pic in sorted(project.pics):
            if pic in reduced:
                matcher.upsert(reduced[pic])
            else:
                matcher.remove(pic)


def _eligible(matchers: Mapping[str, Matcher], profile: CompanyProfile, target: Target) -> bool:
    matcher = next(iter(matchers.values()), None)
    return True if matcher is None else matcher.eligible(profile, target)[0]


@dataclass
class ConsortiumScores:
    proposals: int = 0
    satisfied: int = 0
    targets_with_proposal: int = 0
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    greedy_precision: list[float] = field(default_factory=list)
    greedy_recall: list[float] = field(default_factory=list)
    greedy_satisfied: int = 0
    greedy_total: int = 0
    bm25_precision: list[float] = field(default_factory=list)
    bm25_recall: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "proposals": self.proposals,
            "rules_satisfied_share": round(self.satisfied / self.proposals, 4) if self.proposals else None,
            "targets_with_proposal": self.targets_with_proposal,
            "best_precision": mean(self.precision),
            "best_recall": mean(self.recall),
            "greedy_topk_precision": mean(self.greedy_precision),
            "greedy_topk_recall": mean(self.greedy_recall),
            "greedy_topk_rules_satisfied_share": (
                round(self.greedy_satisfied / self.greedy_total, 4) if self.greedy_total else None
            ),
            "bm25_greedy_topk_precision": mean(self.bm25_precision),
            "bm25_greedy_topk_recall": mean(self.bm25_recall),
        }


@dataclass
class Evaluation:
    """Per-project metrics of every method for one evaluated prefix."""

    prefix: str
    protocol: str
    described: list[bool] = field(default_factory=list)
    participants: int = 0
    with_history: int = 0
    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    consortium: ConsortiumScores | None = None

    @property
    def projects(self) -> int:
        return len(self.described)

    def subset(self, name: str) -> list[int]:
        """Indices of the projects in a subset: all, description (query = title + text), title (title only)."""
        if name == "all":
            return list(range(self.projects))
        return [i for i, d in enumerate(self.described) if d == (name == "description")]

    def summary(self, method: str, subset: str = "all") -> dict[str, float | None]:
        rows = self.rows[method]
        return summarise([rows[i] for i in self.subset(subset)])

    def values(self, method: str, metric: str, subset: str = "all") -> list[float]:
        """One value per project of the subset (0 where undefined), in project order: paired across methods."""
        rows = self.rows[method]
        return [rows[i].get(metric, 0.0) for i in self.subset(subset)]


def evaluate(
    harness: Harness,
    prefix: str,
    configs: Mapping[str, MatcherConfig],
    *,
    baseline: bool = True,
    consortia: bool = True,
) -> Evaluation:
    """Metrics of the baseline and of each matcher configuration over the projects of ``prefix``."""
    matchers = {name: harness.build(cfg, prefix) for name, cfg in configs.items()}
    result = Evaluation(prefix=prefix, protocol=harness.protocol)
    names = (["bm25"] if baseline else []) + list(configs)
    result.rows = {name: [] for name in names}
    result.seconds = {name: 0.0 for name in names}
    consortium = ConsortiumScores() if consortia and "matcher" in matchers else None
    bm25 = Bm25Baseline()
    for case in harness.cases(prefix, matchers):
        truth, with_history, coordinators = case.truth, case.with_history, case.project.coordinators
        result.described.append(case.described)
        result.participants += len(truth)
        result.with_history += len(with_history)
        bm25_ranked: list[str] = []
        if baseline:
            start = time.perf_counter()
            bm25_ranked = bm25.rank(case.target, case.candidates, case.profiles)
            result.seconds["bm25"] += time.perf_counter() - start
            result.rows["bm25"].append(project_metrics(bm25_ranked, truth, with_history, coordinators))
        for name, matcher in matchers.items():
            start = time.perf_counter()
            suggestions = matcher.rank(case.target, top_n=max(max(KS), RANK_DEPTH))
            result.seconds[name] += time.perf_counter() - start
            ranked = [s.company_id for s in suggestions]
            result.rows[name].append(project_metrics(ranked, truth, with_history, coordinators))
            if consortium is not None and name == "matcher":
                _consortia(consortium, case, suggestions, bm25_ranked, harness.taxonomy)
    result.consortium = consortium
    return result


def _consortia(
    scores: ConsortiumScores,
    case: Case,
    suggestions: Sequence[Any],
    bm25_ranked: Sequence[str],
    taxonomy: TaxonomyIndex,
) -> None:
    """Best proposal vs the real consortium, beside greedy top-k of the same ranking and of BM25's."""
    target, profiles, real = case.target, case.profiles, case.truth
    proposals = propose_consortia(target, suggestions, profiles, max_proposals=3, taxonomy=taxonomy)
    for proposal in proposals:
        scores.proposals += 1
        # Verified again here, independently of what the builder recorded.
        if all(c.passed for c in check_rules(proposal, target, profiles, taxonomy)):
            scores.satisfied += 1
    if proposals:
        scores.targets_with_proposal += 1
        best = proposals[0]
        precision, recall = overlap([m.company_id for m in best.members], real)
        scores.precision.append(precision)
        scores.recall.append(recall)
        size = len(best.members)
    else:
        size = 12
    # Greedy baselines: the top-k as they come, the first one leading.
    top = [s.company_id for s in suggestions[:size]]
    precision, recall = overlap(top, real)
    scores.greedy_precision.append(precision)
    scores.greedy_recall.append(recall)
    scores.greedy_total += 1
    if all(c.passed for c in check_rules(_as_proposal(top, profiles), target, profiles, taxonomy)):
        scores.greedy_satisfied += 1
    if bm25_ranked:
        precision, recall = overlap(bm25_ranked[:size], real)
        scores.bm25_precision.append(precision)
        scores.bm25_recall.append(recall)


def _as_proposal(ids: Sequence[str], profiles: Mapping[str, CompanyProfile]) -> ConsortiumProposal:
    members = [
        ConsortiumMember(
            company_id=i,
            company_name=profiles[i].name,
            country=profiles[i].country,
            role="coordinator" if n == 0 else "partner",
            organisation_type=profiles[i].organisation_type,
            size=profiles[i].size,
            parent_group=profiles[i].parent_group,
        )
        for n, i in enumerate(ids)
    ]
    return ConsortiumProposal(rank=1, score=0.0, members=members)
