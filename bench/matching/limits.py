"""How far can any ranking get on this file? Bounds and reference points beside BM25 and the matcher.

``python -m bench.matching.limits --eval EDF-2022,EDF-2023 [--protocol temporal|loo]``
(``make bench-matching-limits DATA=…``) prints, per evaluated year and on the same candidates as
``python -m bench.matching`` (same protocol), mean recall@20 and coordinator@20 for:

ceiling              a perfect ranking: min(20, participants with history) / participants; for
                     coordinator@20 the share of projects whose coordinator has a history
popularity           organisations ranked by their number of projects in the history, nothing else
bm25, matcher        as in the benchmark
country_oracle_*     the 20 places shared out by the real consortium's country mix (an oracle: it is
                     told the nationalities of the answer), each country's places filled in the order
                     of BM25 or of the matcher

The oracle rows answer "what would it take": if knowing the consortium's nationalities in advance
is needed to reach a target, the topic text alone will not reach it.

Coordinator section: coordinator@20 of the ceiling, BM25 and the matcher split by what the call tells
about the work (``data.subject``): thematic topics, challenge topics, and non-thematic ones (…-NT:
SME, SMERO and DIS calls open to any subject, queried by a title that names no subject), and the
best coordinator@20 any ranking could reach if every thematic coordinator with a history were
found and the other topics kept the matcher's hits (``coordinator_bound_thematic_perfect``), how many
coordinators have a history and how many of those one or two earlier projects; ``--coordinators``
prints every coordinator with its record and its rank under the matcher. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench.matching.baseline import Bm25Baseline
from bench.matching.data import DATA_ENV, Dataset, Project, load_or_report, subject
from bench.matching.metrics import hit_at_k, mean, recall_at_k
from bench.matching.run import PROTOCOLS, Harness
from services.matching.matcher import CompanyProfile, Matcher, MatcherConfig, Target
from shared.taxonomy_index import TaxonomyIndex, load_index

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


def measure(data: Dataset, taxonomy: TaxonomyIndex, prefix: str, protocol: str = "temporal") -> dict[str, Any]:
    harness = Harness(data, taxonomy, protocol=protocol)
    matcher = harness.build(MatcherConfig(), prefix)
    bm25 = Bm25Baseline()
    recall: dict[str, list[float]] = {}
    coordinator: dict[str, list[float]] = {}
    by_subject: dict[str, dict[str, list[float]]] = {}
    leads: list[dict[str, Any]] = []
    for case in harness.cases(prefix, {"matcher": matcher}):
        truth, candidates = case.truth, case.candidates
        country = {c: case.profiles[c].country for c in candidates}
        ranked_bm25 = bm25.rank(case.target, candidates, case.profiles)
        ours = _ranked(matcher, case.target, candidates)
        rankings: dict[str, Sequence[str]] = {
            "ceiling": sorted(candidates, key=lambda c: (c not in case.project.coordinators, c not in truth)),
            "popularity": popularity_rank(candidates, case.profiles),
            "bm25": ranked_bm25,
            "matcher": ours,
            "country_oracle_bm25": country_quota(ranked_bm25, truth, country),
            "country_oracle_matcher": country_quota(ours, truth, country),
        }
        leads += coordinator_rows(case.project, case.profiles, ours)
        for name, ranking in rankings.items():
            recall.setdefault(name, []).append(recall_at_k(ranking, truth, K))
            if case.project.coordinators:
                hit = hit_at_k(ranking, case.project.coordinators, K)
                coordinator.setdefault(name, []).append(hit)
                if name in ("ceiling", "bm25", "matcher"):
                    by_subject.setdefault(subject(case.project.topic_id), {}).setdefault(name, []).append(hit)
    result: dict[str, Any] = {"eval": prefix, "protocol": protocol, "projects": len(data.eval_projects(prefix)), "k": K}
    result.update({f"{name}_recall@{K}": mean(v) for name, v in recall.items()})
    result.update({f"{name}_coordinator@{K}": mean(v) for name, v in coordinator.items()})
    result["coordinator_by_subject"] = {
        kind: {"projects": len(hits["ceiling"]), **{f"{n}_coordinator@{K}": mean(v) for n, v in hits.items()}}
        for kind, hits in sorted(by_subject.items())
    }
    projects = sum(len(hits["ceiling"]) for hits in by_subject.values())
    bound = sum(sum(hits["ceiling"] if kind == "thematic" else hits["matcher"]) for kind, hits in by_subject.items())
    result["coordinator_bound_thematic_perfect"] = round(bound / projects, 4) if projects else None
    known = [row for row in leads if row["earlier_projects"]]
    result["coordinators"] = len(leads)
    result["coordinators_with_history"] = len(known)
    result["coordinators_with_1_or_2_earlier_projects"] = sum(1 for row in known if row["earlier_projects"] <= 2)
    result["coordinator_rows"] = leads
    return result


def coordinator_rows(
    project: Project, profiles: Mapping[str, CompanyProfile], ranked: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per coordinator of the project: its earlier record and its place in the matcher's ranking."""
    position = {c: i + 1 for i, c in enumerate(ranked)}
    rows = []
    for member in project.participants:
        if member.pic not in project.coordinators:
            continue
        profile = profiles.get(member.pic)
        history = profile.history if profile is not None else []
        rows.append(
            {
                "topic": project.topic_id,
                "subject": subject(project.topic_id),
                "coordinator": member.name,
                "earlier_projects": len(history),
                "earlier_coordinations": sum(1 for h in history if (h.role or "").lower() == "coordinator"),
                "matcher_rank": position.get(member.pic),
            }
        )
    return rows


def coordinator_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Every evaluated project's coordinator: earlier projects and coordinations, rank under the matcher."""
    lines = [
        "| topic | subject | coordinator | earlier projects | earlier coordinations | matcher rank |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["coordinator_rows"]:
            rank = row["matcher_rank"] if row["matcher_rank"] is not None else "no history"
            lines.append(
                f"| {row['topic']} | {row['subject']} | {row['coordinator']} | {row['earlier_projects']} "
                f"| {row['earlier_coordinations']} | {rank} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching.limits", description=__doc__)
    parser.add_argument("--data", help=f"edf_calls.json (default: env {DATA_ENV} or ../shared/data/edf/)")
    parser.add_argument("--eval", required=True, help="topic-id prefix(es), comma-separated")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="temporal", help="what the history may hold")
    parser.add_argument("--coordinators", action="store_true", help="print every coordinator's record and rank")
    args = parser.parse_args(argv)
    data = load_or_report(args.data)
    if data is None:
        return 2
    taxonomy = load_index()
    results = [measure(data, taxonomy, p.strip(), args.protocol) for p in args.eval.split(",") if p.strip()]
    for result in results:
        print("  ".join(f"{k}={v}" for k, v in result.items() if k != "coordinator_rows"), file=sys.stderr)
    if args.coordinators:
        print(coordinator_table(results) + "\n")
    print(json.dumps(results[0] if len(results) == 1 else {"evals": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
