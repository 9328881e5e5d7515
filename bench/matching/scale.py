"""``python -m bench.matching.scale``: ranking latency, update latency and memory at 10k and 100k.

Single core on purpose (thread pools pinned to 1 before numpy loads). Wall-clock and CPU time
(``time.process_time``) side by side: on a shared, loaded machine the wall clock includes time the
process waited for a core, the CPU time does not. Prints one JSON line last.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench.matching.generator import companies, targets  # noqa: E402
from services.matching.matcher import Matcher, Target  # noqa: E402
from services.matching.matcher.features import profile_text  # noqa: E402
from services.matching.matcher.text import target_text  # noqa: E402
from shared.text import tokenize  # noqa: E402


def rss_mb() -> float:
    """Current resident set size (psutil when installed, else /proc), in MB."""
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KB


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def position(matcher: Matcher, target: Target, company_id: str) -> int:
    """1-based rank of a company among the eligible ones (len+1 when not eligible)."""
    final, mask, _, _ = matcher.scores(target)
    row = matcher.rows[company_id]
    return int((final[mask] > final[row]).sum()) + 1 if mask[row] else int(mask.sum()) + 1


def measure(n: int, queries: list[Target], updates: int) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    matcher = Matcher()
    for profile in companies(n):
        matcher.upsert(profile)
    matcher.compact()
    build = time.perf_counter() - start
    after = rss_mb()
    for target in queries[:3]:  # warm caches (stems, scipy code paths)
        matcher.rank(target, top_n=20)
    times, cpu = [], []
    for target in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        matcher.rank(target, top_n=20)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    # Update latency: a company rewrites its profile to fit a target; time from the upsert until
    # the next ranking of that target is returned (upsert + rank, no explicit compaction), and
    # check that the ranking did use the new profile (the company moved up).
    lags, lag_cpu, moved_up = [], [], 0
    for i, target in enumerate(queries[:updates]):
        base = next(iter(companies(1, seed=1000 + i))).model_copy(update={"id": f"U{i:04d}", "country": "BE"})
        matcher.upsert(base)
        old_position = position(matcher, target, base.id)
        changed = base.model_copy(
            update={
                "capabilities": target.sought_capabilities * 2,
                "domains": target.domains,
                "keywords": [target.title],
            }
        )
        t0, c0 = time.perf_counter(), time.process_time()
        matcher.upsert(changed)
        matcher.rank(target, top_n=20)
        lags.append((time.perf_counter() - t0) * 1000)
        lag_cpu.append((time.process_time() - c0) * 1000)
        moved_up += position(matcher, target, changed.id) < old_position
    return {
        "companies": n,
        "build_seconds": round(build, 2),
        "rank_ms_median": round(statistics.median(times), 2),
        "rank_ms_p99": round(percentile(times, 0.99), 2),
        "rank_cpu_ms_median": round(statistics.median(cpu), 2),
        "rank_cpu_ms_p99": round(percentile(cpu, 0.99), 2),
        "update_to_ranked_ms_median": round(statistics.median(lags), 2),
        "update_to_ranked_ms_max": round(max(lags), 2),
        "update_to_ranked_cpu_ms_median": round(statistics.median(lag_cpu), 2),
        "update_to_ranked_cpu_ms_max": round(max(lag_cpu), 2),
        "updated_company_moved_up": f"{moved_up}/{len(lags)}",
        "index_rss_mb": round(after - before, 1),
        "index_estimate_mb": round(matcher.memory_bytes() / 2**20, 1),
        "rss_mb": round(rss_mb(), 1),
    }


def baseline(n: int, queries: list[Target]) -> dict[str, Any]:
    """Naive rank-bm25 over the same corpus: rebuild-free queries, but no incremental updates."""
    from rank_bm25 import BM25Okapi

    start = time.perf_counter()
    docs = [tokenize(profile_text(p)) for p in companies(n)]
    bm25 = BM25Okapi(docs)
    build = time.perf_counter() - start
    times = []
    for target in queries:
        t0 = time.perf_counter()
        scores = bm25.get_scores(tokenize(target_text(target)))
        sorted(range(len(scores)), key=lambda i: -scores[i])[:20]
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "method": "rank-bm25 BM25Okapi (no eligibility, no explanations)",
        "companies": n,
        "build_seconds": round(build, 2),
        "rank_ms_median": round(statistics.median(times), 2),
        "rank_ms_p99": round(percentile(times, 0.99), 2),
        "update": "full rebuild (BM25Okapi has no incremental update): build_seconds",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching.scale", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--baseline-size", type=int, default=10000)
    args = parser.parse_args(argv)
    queries = targets(args.targets)
    result: dict[str, Any] = {"single_core": True, "targets": len(queries), "runs": []}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        run = measure(size, queries, args.updates)
        result["runs"].append(run)
        print(json.dumps(run), file=sys.stderr)
        gc.collect()
    result["baseline"] = baseline(args.baseline_size, queries[:10])
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    largest = result["runs"][-1] if result["runs"] else {}
    result["goals"] = {
        "rank_under_100ms": largest.get("rank_ms_p99", 1e9) < 100,
        "update_under_1s": largest.get("update_to_ranked_ms_max", 1e9) < 1000,
        "memory_under_2gb": result["peak_rss_mb"] < 2048,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
