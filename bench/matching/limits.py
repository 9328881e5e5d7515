"""How far can any ranking get on this file? Bounds and reference points beside BM25 and the matcher.

``python -m bench.matching.limits --eval EDF-2022,EDF-2023`` (``make bench-matching-limits DATA=…``)
prints, per evaluated year and on the same candidates as ``python -m bench.matching``, mean recall@20:

ceiling              a perfect ranking: min(20, participants with history) / participants
popularity           organisations ranked by their number of other projects, nothing else
bm25, matcher        as in the benchmark
country_oracle_*     the 20 places shared out by the real consortium's country mix (an oracle: it is
                     told the nationalities of the answer), each country's places filled in the order
                     of BM25 or of the matcher
earlier_history_*    BM25 and matcher when every organisation's history excludes the whole evaluated
                     year, not only the held-out project: members and non-members lose the same
                     information, so no count can betray membership (the data README's protocol)

The oracle rows answer "what would it take": if knowing the consortium's nationalities in advance
is needed to reach a target, the topic text alone will not reach it. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench.matching.baseline import TokenCache, bm25_rank
from bench.matching.data import DATA_ENV, Dataset, Project, load_or_report, profiles_from, target_for
from bench.matching.metrics import mean, recall_at_k
from bench.matching.run import Harness
from services.matching.matcher import CompanyProfile, Matcher, MatcherConfig, Target
from services.matching.matcher.taxonomy import Taxonomy, load_taxonomy

K = 20


def popularity_rank(candidates: Sequence[str], profiles: Mapping[str, CompanyProfile]) -> list[str]:
    """Most projects first, ties by id."""
    return sorted(candidates, key=lambda c: (-len(profiles[c].history), c))


def country_quota(ranked: Sequence[str], truth: frozenset[str], country: Mapping[str, str], k: int = K) -> list[str]:
    """The first ``k`` places shared out by the country mix of the real participants with history.

    Quotas are the largest-remainder split of ``k`` by each country's share (ties by country code, so
    the result never depends on set order), each filled in ``ranked`` order; places a country cannot
    fill go to the best remaining candidates.
    """
    mix = Counter(country[c] for c in truth if c in country)
    total = sum(mix.values())
    if not total:
        return list(ranked[:k])
    exact = {nation: k * n / total for nation, n in mix.items()}
    quota = {nation: int(share) for nation, share in exact.items()}
    by_remainder = sorted(exact, key=lambda nation: (-(exact[nation] - quota[nation]), nation))
    for nation in by_remainder[: k - sum(quota.values())]:
        quota[nation] += 1
    picked: list[str] = []
    for nation in sorted(quota):
        picked += [c for c in ranked if country[c] == nation][: quota[nation]]
    chosen = set(picked)
    return picked + [c for c in ranked if c not in chosen][: k - len(picked)]


def _ranked(matcher: Matcher, target: Target, candidates: Sequence[str]) -> list[str]:
    """Every candidate in ``Matcher.rank`` order (score, then id), without building explanations."""
    final, _, _, _ = matcher.scores(target)
    score = {cid: float(final[row]) for cid, row in matcher.rows.items()}
    return sorted(candidates, key=lambda c: (-score[c], c))


def leave_one_out(harness: Harness, prefix: str) -> dict[str, list[float]]:
    """The benchmark's protocol: history = every other project."""
    values: dict[str, list[float]] = {}
    matcher = harness.build(MatcherConfig())
    cache = TokenCache()
    for project in harness.data.eval_projects(prefix):
        target = target_for(project, harness.data, harness.taxonomy)
        reduced = harness.without(project)
        harness.hold_out(matcher, project, reduced)
        candidates = sorted(p for p, prof in reduced.items() if matcher.eligible(prof, target)[0])
        country = {c: reduced[c].country for c in candidates}
        truth = project.pics
        bm25 = bm25_rank(target, candidates, reduced, cache)
        ours = _ranked(matcher, target, candidates)
        rankings: dict[str, Sequence[str]] = {
            "ceiling": sorted(candidates, key=lambda c: c not in truth),
            "popularity": popularity_rank(candidates, reduced),
            "bm25": bm25,
            "matcher": ours,
            "country_oracle_bm25": country_quota(bm25, truth, country),
            "country_oracle_matcher": country_quota(ours, truth, country),
        }
        for name, ranking in rankings.items():
            values.setdefault(name, []).append(recall_at_k(ranking, truth, K))
        harness.restore(matcher, project)
    return values


def earlier_history(data: Dataset, taxonomy: Taxonomy, prefix: str) -> dict[str, list[float]]:
    """History = every project outside the evaluated year: the same profiles for every target."""
    history = [p for p in data.projects if not p.topic_id.startswith(prefix)]
    profiles = profiles_from(history, data, taxonomy)
    matcher = Matcher(MatcherConfig(), taxonomy=taxonomy)
    for profile in profiles.values():
        matcher.upsert(profile)
    matcher.compact()
    cache = TokenCache()
    values: dict[str, list[float]] = {}
    evaluated: list[Project] = data.eval_projects(prefix)
    for project in evaluated:
        target = target_for(project, data, taxonomy)
        candidates = sorted(p for p, prof in profiles.items() if matcher.eligible(prof, target)[0])
        for name, ranking in (
            ("earlier_history_bm25", bm25_rank(target, candidates, profiles, cache)),
            ("earlier_history_matcher", _ranked(matcher, target, candidates)),
        ):
            values.setdefault(name, []).append(recall_at_k(ranking, project.pics, K))
    return values


def measure(data: Dataset, taxonomy: Taxonomy, prefix: str) -> dict[str, Any]:
    harness = Harness(data, taxonomy)
    values = {**leave_one_out(harness, prefix), **earlier_history(data, taxonomy, prefix)}
    result: dict[str, Any] = {"eval": prefix, "projects": len(data.eval_projects(prefix)), "k": K}
    result.update({f"{name}_recall@{K}": mean(v) for name, v in values.items()})
    bm25 = result.get(f"bm25_recall@{K}")
    if bm25:
        # What 1.5 x BM25 would need, beside what the oracle gets: the gap the target asks for.
        result[f"target_1.5x_bm25_recall@{K}"] = round(1.5 * bm25, 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching.limits", description=__doc__)
    parser.add_argument("--data", help=f"edf_calls.json (default: env {DATA_ENV} or ../shared/data/edf/)")
    parser.add_argument("--eval", required=True, help="topic-id prefix(es), comma-separated")
    args = parser.parse_args(argv)
    data = load_or_report(args.data)
    if data is None:
        return 2
    taxonomy = load_taxonomy()
    results = [measure(data, taxonomy, p.strip()) for p in args.eval.split(",") if p.strip()]
    for result in results:
        print("  ".join(f"{k}={v}" for k, v in result.items()), file=sys.stderr)
    print(json.dumps(results[0] if len(results) == 1 else {"evals": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
