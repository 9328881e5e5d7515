"""Run the EDF benchmark: plain BM25 and the platform's Matcher, same candidates, same run.

For each funded project of the evaluated topics, every organisation of the *other* projects is a
candidate, profiled only from those other projects. The Matcher is built once over all projects and
then updated incrementally per held-out project (its participants re-upserted without it, or
removed when it was their only project) — the same upsert/remove path the service uses, which
yields exactly the index a fresh build over the other projects would (see the unit tests).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.matching.baseline import TokenCache, bm25_rank
from bench.matching.data import Dataset, Project, others, profiles_from, target_for
from bench.matching.metrics import mean, overlap, recall_at_k, reciprocal_rank
from services.matching.matcher import (
    CompanyProfile,
    ConsortiumMember,
    ConsortiumProposal,
    Matcher,
    MatcherConfig,
    check_rules,
    propose_consortia,
)
from services.matching.matcher.embeddings import TextEncoder
from services.matching.matcher.taxonomy import Taxonomy

KS = (10, 20, 50)
RANK_DEPTH = 60  # suggestions handed to the consortium builder


@dataclass
class Scores:
    """Per-project metric values for one method."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, ranked: Sequence[str], truth: frozenset[str], with_history: frozenset[str]) -> None:
        for k in KS:
            self.values.setdefault(f"recall@{k}", []).append(recall_at_k(ranked, truth, k))
            if with_history:
                self.values.setdefault(f"recall@{k}_hist", []).append(recall_at_k(ranked, with_history, k))
        self.values.setdefault("mrr", []).append(reciprocal_rank(ranked, truth))

    def summary(self) -> dict[str, float | None]:
        return {name: mean(v) for name, v in self.values.items()}


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
        }


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
    """Keeps one Matcher per configuration in step with the held-out project."""

    def __init__(self, data: Dataset, taxonomy: Taxonomy, encoder: TextEncoder | None = None) -> None:
        self.data = data
        self.taxonomy = taxonomy
        self.encoder = CachedEncoder(encoder) if encoder is not None else None
        self.full = profiles_from(data.projects, data, taxonomy)

    def build(self, config: MatcherConfig) -> Matcher:
        matcher = Matcher(config, taxonomy=self.taxonomy, encoder=self.encoder if config.weight("dense") else None)
        for profile in self.full.values():
            matcher.upsert(profile)
        matcher.compact()
        return matcher

    def without(self, project: Project) -> dict[str, CompanyProfile]:
        """Every organisation's profile built from all projects except ``project``."""
        return profiles_from(others(self.data.projects, project), self.data, self.taxonomy)

    def hold_out(self, matcher: Matcher, project: Project, reduced: Mapping[str, CompanyProfile]) -> None:
        """Bring the matcher to the state without ``project``: only its participants change."""
        for pic in sorted(project.pics):
            if pic in reduced:
                matcher.upsert(reduced[pic])
            else:
                matcher.remove(pic)

    def restore(self, matcher: Matcher, project: Project) -> None:
        for pic in sorted(project.pics):
            matcher.upsert(self.full[pic])


def evaluate(
    harness: Harness,
    prefix: str,
    configs: Mapping[str, MatcherConfig],
    *,
    baseline: bool = True,
    consortia: bool = True,
) -> dict[str, Any]:
    """Metrics for the baseline and each matcher configuration over the projects of ``prefix``."""
    projects = harness.data.eval_projects(prefix)
    matchers = {name: harness.build(cfg) for name, cfg in configs.items()}
    methods: dict[str, Scores] = {name: Scores() for name in ["bm25", *configs] if name != "bm25" or baseline}
    consortium = ConsortiumScores()
    cache = TokenCache()
    timings: dict[str, float] = {name: 0.0 for name in methods}
    participants = with_hist_total = 0
    for project in projects:
        target = target_for(project, harness.data, harness.taxonomy)
        reduced = harness.without(project)
        for matcher in matchers.values():
            harness.hold_out(matcher, project, reduced)
        candidates = sorted(p for p, prof in reduced.items() if harness_eligible(matchers, prof, target))
        truth = project.pics
        with_history = frozenset(truth & set(candidates))
        participants += len(truth)
        with_hist_total += len(with_history)
        if baseline:
            start = time.perf_counter()
            methods["bm25"].add(bm25_rank(target, candidates, reduced, cache), truth, with_history)
            timings["bm25"] += time.perf_counter() - start
        for name, matcher in matchers.items():
            start = time.perf_counter()
            suggestions = matcher.rank(target, top_n=max(max(KS), RANK_DEPTH))
            timings[name] += time.perf_counter() - start
            methods[name].add([s.company_id for s in suggestions], truth, with_history)
            if consortia and name == "matcher":
                _consortia(consortium, target, suggestions, reduced, project, harness)
        for matcher in matchers.values():
            harness.restore(matcher, project)
    result: dict[str, Any] = {
        "eval": prefix,
        "projects": len(projects),
        "participants": participants,
        "participants_with_history": with_hist_total,
    }
    for name, scores in methods.items():
        result[name] = {**scores.summary(), "seconds": round(timings[name], 2)} if projects else None
    if consortia and "matcher" in matchers:
        result["consortium"] = consortium.summary()
    return result


def harness_eligible(matchers: Mapping[str, Matcher], profile: CompanyProfile, target: Any) -> bool:
    matcher = next(iter(matchers.values()), None)
    return True if matcher is None else matcher.eligible(profile, target)[0]


def _consortia(
    scores: ConsortiumScores,
    target: Any,
    suggestions: Sequence[Any],
    profiles: Mapping[str, CompanyProfile],
    project: Project,
    harness: Harness,
) -> None:
    proposals = propose_consortia(target, suggestions, profiles, max_proposals=3, taxonomy=harness.taxonomy)
    real = project.pics
    for proposal in proposals:
        scores.proposals += 1
        # Verified again here, independently of what the builder recorded.
        if all(c.passed for c in check_rules(proposal, target, profiles, harness.taxonomy)):
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
    # Greedy baseline: the top-k suggestions as they come, the first one leading.
    top = [s.company_id for s in suggestions[:size]]
    precision, recall = overlap(top, real)
    scores.greedy_precision.append(precision)
    scores.greedy_recall.append(recall)
    greedy = _as_proposal(top, profiles)
    scores.greedy_total += 1
    if all(c.passed for c in check_rules(greedy, target, profiles, harness.taxonomy)):
        scores.greedy_satisfied += 1


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
