"""Ideas tried against the matcher on the EDF benchmark, reproducible: ``python -m bench.matching.experiments``.

``make bench-matching-experiments DATA=… EVAL=EDF-2022,EDF-2023`` prints, per evaluated year and on
the temporal protocol's own candidates, recall@20, coordinator@20 and two paired 95 % CIs of
recall@20 (against BM25 and against the matcher) for every idea below, then one JSON object.

Each idea is a re-ranking of the same candidates from one table of per-candidate features
(``features.py``), all computed from the history before the evaluated call year. An idea "added to
the matcher with weight w" is the matcher's own weighted average with one more signal,
``(W · matcher + w · signal) / (W + w)`` where W is the sum of the matcher's weights — the
signal joins after the second stage (the network signal's seeds are the matcher's).

The learning-to-rank rows are trained only on an earlier evaluated year (EDF-2022 with 2021 as
history) and tested on the next (EDF-2023); EDF-2022 has no earlier year to learn from. The
"total minus one" leak of round 1 cannot occur here: every feature of a candidate counts projects of
earlier call years only, whatever consortium is being predicted (``test_experiments_features_are_leak_free``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.matching.data import DATA_ENV, Dataset, load_or_report
from bench.matching.features import CaseFeatures, YearFeatures, year_features
from bench.matching.metrics import hit_at_k, mean, paired_bootstrap_ci, recall_at_k
from bench.matching.run import Harness
from services.matching.matcher import MatcherConfig
from shared.taxonomy_index import load_index

FloatArray = npt.NDArray[np.float64]
Scorer = Callable[[CaseFeatures], FloatArray]
K = 20


def ranked(case: CaseFeatures, scores: FloatArray) -> list[str]:
    """Candidates best first, ties by id (as ``Matcher.rank``)."""
    order = sorted(range(len(case.candidates)), key=lambda i: (-float(scores[i]), case.candidates[i]))
    return [case.candidates[i] for i in order]


def added(signal: str, weight: float) -> Scorer:
    """The matcher with one more signal joining its weighted average (see the module doc)."""

    def score(case: CaseFeatures) -> FloatArray:
        column = case.column(signal)
        top = float(column.max()) if column.size else 0.0
        scaled = column / top if top > 0 else column
        w_total = case.weight_total
        return (w_total * case.column("matcher") + weight * scaled) / (w_total + weight)

    return score


def column(name: str) -> Scorer:
    return lambda case: case.column(name)


def rrf(*names: str, k: float = 60.0, weights: Sequence[float] | None = None) -> Scorer:
    """Reciprocal rank fusion of the rankings by these columns: Σ w / (k + rank)."""

    def score(case: CaseFeatures) -> FloatArray:
        total = np.zeros(len(case.candidates))
        for name, w in zip(names, weights or [1.0] * len(names), strict=True):
            order = np.argsort(-case.column(name), kind="stable")
            rank = np.empty(len(order))
            rank[order] = np.arange(1, len(order) + 1)
            total += w / (k + rank)
        return total

    return score


def reserve(coordinator: Scorer, slots: int) -> Scorer:
    """The top 20 shared out: the matcher's best 20 - ``slots``, then the best of a coordinator score
    among the others, then the rest in the matcher's order."""

    def score(case: CaseFeatures) -> FloatArray:
        base = case.column("matcher")
        by_matcher = [int(i) for i in np.argsort(-base, kind="stable")]
        kept = by_matcher[: K - slots]
        taken = set(kept)
        lead = [int(i) for i in np.argsort(-coordinator(case), kind="stable") if int(i) not in taken][:slots]
        taken.update(lead)
        order = kept + lead + [i for i in by_matcher if i not in taken]
        out = np.empty(len(order))
        out[np.asarray(order)] = np.arange(len(order), 0, -1, dtype=np.float64)
        return out

    return score


@dataclass
class Logistic:
    """A plain L2-regularised logistic regression (Newton steps on standardised features)."""

    names: tuple[str, ...]
    l2: float = 1.0
    coef: FloatArray | None = None
    mu: FloatArray | None = None
    sd: FloatArray | None = None

    def matrix(self, case: CaseFeatures) -> FloatArray:
        return np.column_stack([case.column(n) for n in self.names])

    def fit(self, cases: Sequence[CaseFeatures], label: Callable[[CaseFeatures], FloatArray]) -> Logistic:
        x = np.vstack([self.matrix(c) for c in cases])
        y = np.concatenate([label(c) for c in cases])
        self.mu, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = np.column_stack([np.ones(len(x)), (x - self.mu) / self.sd])
        w = np.zeros(z.shape[1])
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-z @ w))
            reg = self.l2 * np.r_[0.0, w[1:]]
            grad = z.T @ (p - y) + reg
            hess = (z * (p * (1 - p))[:, None]).T @ z + self.l2 * np.diag(np.r_[0.0, np.ones(len(w) - 1)])
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        self.coef = w
        return self

    def __call__(self, case: CaseFeatures) -> FloatArray:
        assert self.coef is not None and self.mu is not None and self.sd is not None
        return np.asarray(self.coef[0] + ((self.matrix(case) - self.mu) / self.sd) @ self.coef[1:], dtype=np.float64)


def group_lead_text(case: CaseFeatures) -> FloatArray:
    """Coordinations of the brand group (log) times the text signal: a lead that knows the subject."""
    return case.column("group_coordinated") * case.column("text")


def participants(case: CaseFeatures) -> FloatArray:
    return np.array([1.0 if c in case.truth else 0.0 for c in case.candidates])


def coordinators(case: CaseFeatures) -> FloatArray:
    return np.array([1.0 if c in case.coordinators else 0.0 for c in case.candidates])


def ideas(years: Mapping[str, YearFeatures], prefix: str) -> dict[str, Scorer | None]:
    """Every idea by name; None where it cannot be run leak-free for ``prefix`` (no earlier year)."""
    out: dict[str, Scorer | None] = {"matcher": column("matcher")}
    for signal, w in EXTRA_SIGNALS:
        out[f"+ {signal} ({w})"] = added(signal, w)
    for slots in (3, 5):
        out[f"coordinator slots ({slots}): coordinator prior"] = reserve(column("lead_prior"), slots)
    out["coordinator slots (5): group coordinations x text"] = reserve(group_lead_text, 5)
    out["rrf(matcher, lead prior)"] = rrf("matcher", "lead_prior")
    out["rrf(matcher, bm25)"] = rrf("matcher", "bm25")
    out["rrf(matcher, lsa)"] = rrf("matcher", "lsa")
    earlier = [p for p in years if p < prefix and years[p].cases]
    for name, features, label in LTR:
        key = f"ltr {name}"
        if not earlier:
            out[key] = None
            continue
        model = Logistic(features).fit([c for p in earlier for c in years[p].cases], label)
        out[key] = model if label is participants else reserve(model, 5)
    return out


EXTRA_SIGNALS: tuple[tuple[str, float], ...] = (
    ("same_code", 0.3),
    ("predecessor", 0.3),
    ("predecessor", 1.0),
    ("kind", 0.3),
    ("org_prior", 0.3),
    ("coordinated", 0.3),
    ("coordinated_category", 0.3),
    ("previous_year", 0.3),
    ("group_category", 0.3),
    ("group_coordinated", 0.3),
    ("lead_prior", 0.3),
    ("group_text", 0.3),
    ("network_lead", 0.4),
    ("lsa", 0.3),
    ("lsa", 0.6),
)
"""(feature, weight) put into the matcher's average one at a time."""

LTR_FEATURES = (
    "text",
    "category",
    "network",
    "bm25",
    "lsa",
    "projects",
    "coordinated",
    "coordinated_category",
    "same_code",
    "predecessor",
    "kind",
    "org_prior",
    "previous_year",
    "group_category",
    "group_coordinated",
    "group_text",
    "network_lead",
    "large",
    "research",
)
LTR: tuple[tuple[str, tuple[str, ...], Callable[[CaseFeatures], FloatArray]], ...] = (
    (f"participants ({len(LTR_FEATURES)} features)", LTR_FEATURES, participants),
    (f"coordinator, 5 slots ({len(LTR_FEATURES)} features)", LTR_FEATURES, coordinators),
)


def measure(years: Mapping[str, YearFeatures], prefix: str) -> dict[str, dict[str, Any]]:
    """Per idea: r@20, coord@20 and the paired CIs of its r@20 against BM25 and against the matcher."""
    cases = years[prefix].cases
    bm25 = [recall_at_k(ranked(c, c.column("bm25")), c.truth, K) for c in cases]
    base = [recall_at_k(ranked(c, c.column("matcher")), c.truth, K) for c in cases]
    rows: dict[str, dict[str, Any]] = {}
    for name, scorer in ideas(years, prefix).items():
        if scorer is None:
            rows[name] = {"recall@20": None}
            continue
        orders = [ranked(c, scorer(c)) for c in cases]
        recall = [recall_at_k(o, c.truth, K) for o, c in zip(orders, cases, strict=True)]
        lead = [hit_at_k(o, c.coordinators, K) for o, c in zip(orders, cases, strict=True) if c.coordinators]
        rows[name] = {
            "recall@20": mean(recall),
            "coordinator@20": mean(lead),
            "ci_vs_bm25": list(paired_bootstrap_ci(recall, bm25)),
            "ci_vs_matcher": list(paired_bootstrap_ci(recall, base)) if name != "matcher" else None,
        }
    return rows


COORDINATOR_KS = (1, 5, 10, 20, 50, 100)


def coordinator_rankings(years: Mapping[str, YearFeatures], prefix: str) -> dict[str, dict[str, float | None]]:
    """coordinator@k of rankings built to find the coordinator alone (not the consortium)."""
    scorers: dict[str, Scorer | None] = {
        "matcher": column("matcher"),
        "coordinator prior (hand-written)": column("lead_prior"),
        "group coordinations x text": group_lead_text,
        "coordinated before x text": lambda c: np.log1p(c.column("coordinated")) * c.column("text"),
    }
    earlier = [p for p in years if p < prefix and years[p].cases]
    scorers["ltr coordinator"] = (
        Logistic(LTR_FEATURES).fit([c for p in earlier for c in years[p].cases], coordinators) if earlier else None
    )
    cases = [c for c in years[prefix].cases if c.coordinators]
    out: dict[str, dict[str, float | None]] = {}
    for name, scorer in scorers.items():
        if scorer is None:
            empty: dict[str, float | None] = {f"coordinator@{k}": None for k in COORDINATOR_KS}
            out[name] = empty | {"thematic_coordinator@20": None}
            continue
        orders = [ranked(c, scorer(c)) for c in cases]
        out[name] = {
            f"coordinator@{k}": mean([hit_at_k(o, c.coordinators, k) for o, c in zip(orders, cases, strict=True)])
            for k in COORDINATOR_KS
        }
        thematic = [hit_at_k(o, c.coordinators, K) for o, c in zip(orders, cases, strict=True) if c.thematic]
        out[name]["thematic_coordinator@20"] = mean(thematic)
    return out


def coordinator_table(results: Mapping[str, Mapping[str, Mapping[str, float | None]]]) -> str:
    prefixes = list(results)
    keys = [f"coordinator@{k}" for k in COORDINATOR_KS] + ["thematic_coordinator@20"]
    head = "| coordinator ranking | " + " | ".join(
        f"{p} {k.replace('coordinator', '')}" for p in prefixes for k in keys
    )
    lines = [head + " |", "|" + "---|" * (1 + len(prefixes) * len(keys))]
    for name in results[prefixes[0]]:
        cells = [results[p][name][k] for p in prefixes for k in keys]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)


def table(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    prefixes = list(results)
    head = "| idea | " + " | ".join(f"{p} r@20 | {p} coord@20 | {p} vs BM25 | {p} vs matcher" for p in prefixes)
    lines = [head + " |", "|" + "---|" * (1 + 4 * len(prefixes))]
    for name in results[prefixes[0]]:
        cells: list[str] = []
        for p in prefixes:
            row = results[p].get(name, {})
            if row.get("recall@20") is None:
                cells += ["-"] * 4
                continue
            cells += [f"{row['recall@20']:.3f}", f"{row['coordinator@20']:.3f}", _ci(row["ci_vs_bm25"])]
            cells.append(_ci(row["ci_vs_matcher"]) if row["ci_vs_matcher"] else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(pair: Sequence[float]) -> str:
    return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"


def run(data: Dataset, prefixes: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per prefix: {"ideas": {idea: row}, "coordinator": {ranking: coordinator@k}}."""
    taxonomy = load_index()
    harness = Harness(data, taxonomy)
    config = MatcherConfig()
    # Every evaluated year before the last is also training data for the learning-to-rank rows.
    years = {p: year_features(harness, p, config) for p in sorted(prefixes)}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in prefixes:
        if not years[p].cases:
            print(f"{p}: no evaluated project has candidates with a history; left out", file=sys.stderr)
            continue
        out[p] = {"ideas": measure(years, p), "coordinator": coordinator_rankings(years, p)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching.experiments", description=__doc__)
    parser.add_argument("--data", help=f"edf_calls.json (default: env {DATA_ENV} or ../shared/data/edf/)")
    parser.add_argument("--eval", required=True, help="topic-id prefixes, comma-separated, e.g. EDF-2022,EDF-2023")
    args = parser.parse_args(argv)
    data = load_or_report(args.data)
    if data is None:
        return 2
    prefixes = [p.strip() for p in args.eval.split(",") if p.strip()]
    results = run(data, prefixes)
    if not results:
        print(json.dumps({"experiments": {}}))
        return 0
    print(table({p: r["ideas"] for p, r in results.items()}) + "\n")
    print(coordinator_table({p: r["coordinator"] for p, r in results.items()}) + "\n")
    print(json.dumps({"experiments": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
