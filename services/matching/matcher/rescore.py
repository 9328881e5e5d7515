"""Cheap rescoring when one company changes: is a new ranking of this target needed at all?

When one company is upserted or removed, the service has to decide, for every open target, whether
that company enters, leaves or moves in the published top N. A full ``rank`` per open target costs
O(registry) each; this module answers the question in O(size of the changed company's profile) per
target from a small per-target state kept by the Matcher:

* the target's query, domain and category columns (so nothing about the target is re-derived);
* the **normalisers**: for every max-normalised signal (text, dense, experience, network) the raw
  maximum over the eligible companies and the row that holds it;
* the second stage's **seeds** (the best first-stage companies), their weights, the lowest seed
  score, and each seed's partner counts.

The changed company's signals are recomputed from its own row only, scaled with the stored
normalisers, fused like ``Matcher.scores`` does, and its new score is placed among the scores of the
published top N.

Exactness. Max-normalisation means a new maximum rescales everybody, and the second stage means a
new seed changes everybody's network signal. So the state is *fragile* in a few rows: when a changed
row holds one of the maxima, is a seed, or would now exceed a maximum or enter the seeds, the cheap
path is not taken and the target is scored in full once (``Matcher.scores``, no explanations), which
also refreshes the state. Every change since the state was taken is checked this way (the Matcher
keeps a bounded log of changed rows; a state older than the log, a changed target, or a compaction
of the text index — which moves the BM25 length normaliser — also force the full path).

What stays approximate, on purpose: BM25 idf depends on document frequencies, so every upsert shifts
every other company's raw text score by a tiny amount. The cheap path recomputes the changed company
and the text maximum exactly, but compares against the *published* scores of the others (which is
also what the service shows). A company that sits within that drift of a neighbour's score may be
reported unchanged where a full ranking would swap the two; the published list is then refreshed at
the next change that republishes the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from services.matching.matcher.matcher import Matcher

FloatArray = npt.NDArray[np.float64]

NORMALISED: tuple[str, ...] = ("text", "dense", "experience", "network")
"""Signals scaled by their maximum over the eligible companies (the fragile normalisers)."""


@dataclass
class TargetState:
    """What a cheap rescoring of one target needs; taken from a full scoring of that target."""

    key: str  # "target_type:id"
    fingerprint: str  # hash of the target's content: an edited target gets a fresh state
    version: int
    generation: int
    programme: str
    query: dict[str, float]
    domain_cols: list[int]
    category_col: int | None
    stage1: tuple[str, ...]  # first-stage signals present for this target (network comes after)
    maxima: dict[str, tuple[float, int]]  # signal -> (raw maximum over eligible rows, row holding it)
    vector: FloatArray | None = None  # target embedding when the dense signal is on
    seeds: dict[int, float] = field(default_factory=dict)  # seed row -> its first-stage score
    min_seed: float = math.inf  # lowest first-stage score among the seeds
    full_seeds: bool = False  # True when there were at least ``seeds`` eligible rows
    seed_listed: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> partner key counts
    seed_keys: dict[int, list[str]] = field(default_factory=dict)  # seed -> its own identity keys
    network: bool = False

    def fragile_rows(self) -> set[int]:
        return {row for _, row in self.maxima.values() if row >= 0} | set(self.seeds)


@dataclass(frozen=True)
class RescoreCheck:
    """Outcome of ``Matcher.rescore_check`` for one (target, changed company)."""

    changed: bool
    """The company enters, leaves, or changes position or score (4 decimals) in the top N."""
    position: int | None
    """Its new 1-based position when in the top N, else None."""
    score: float | None
    """Its new score (None when not eligible or removed)."""
    path: str
    """"cheap" (its own profile only) or "full" (the target was scored in full, see the module doc)."""
    reason: str = ""


def row_values(matcher: Matcher, state: TargetState, row: int) -> dict[str, float] | None:
    """Raw (un-normalised) signal values of one row for the target, None when not eligible."""
    store, cfg = matcher.store, matcher.config
    if not (store.alive[row] and store.eligible.get(state.programme, store.eligible["OTHER"])[row]):
        return None
    raw: dict[str, float] = {}
    if "text" in state.stage1:
        raw["text"] = sum(matcher.terms.row_contributions(row, state.query).values())
    if "domain" in state.stage1:
        raw["domain"] = float(store.domain_bits[row, state.domain_cols].mean())
    if "category" in state.stage1 and state.category_col is not None:
        count = float(store.category_counts[row, state.category_col])
        raw["category"] = min(1.0, math.log1p(count) / math.log1p(cfg.category_saturation))
    if "experience" in state.stage1:
        raw["experience"] = float(store.projects[row])
    if "coordinator" in state.stage1:
        raw["coordinator"] = min(1.0, float(store.coordinated[row]) / 2.0)
    if "dense" in state.stage1 and state.vector is not None:
        raw["dense"] = float(matcher.vectors[row] @ state.vector)
    return raw


def scaled(state: TargetState, signal: str, value: float) -> float:
    """The signal as ``Matcher.signals`` scales it (max-normalised ones by the stored maximum)."""
    if signal not in state.maxima:
        return value
    top = state.maxima[signal][0]
    if signal == "experience":
        return math.log1p(value) / math.log1p(top) if top > 0 else 0.0
    return value / top if top > 0 else 0.0


def joint_with_seeds(matcher: Matcher, state: TargetState, row: int) -> float:
    """Raw network spread of one row: sum over seeds of seed score x log(1 + joint projects).

    Joint projects are counted from both sides, as ``PartnerGraph.neighbours`` does: the partner keys
    the row lists that a seed owns, and the seed's listed partner keys that the row owns.
    """
    graph = matcher.graph
    listed = graph.listed.row_counts(row)
    owned = [k for k in graph.row_keys.get(row, []) if graph.key_owner.get(k) == row]
    joint: dict[int, float] = {}
    for seed in state.seeds:
        if seed == row:
            continue
        # The row lists one of the seed's keys, and the seed lists a key the row owns.
        count = sum(listed.get(k, 0.0) for k in state.seed_keys.get(seed, []))
        count += sum(state.seed_listed.get(seed, {}).get(k, 0.0) for k in owned)
        if count:
            joint[seed] = count
    return float(sum(state.seeds[s] * math.log1p(c) for s, c in joint.items()))


def fuse(matcher: Matcher, values: Mapping[str, float]) -> float:
    """Weighted average of the signals present, as ``Matcher._fuse``."""
    total = weight = 0.0
    for name, value in values.items():
        w = matcher.config.weight(name)
        total += w * value
        weight += w
    return total / weight if weight else total


def cheap_score(matcher: Matcher, state: TargetState, row: int) -> tuple[float | None, str]:
    """The row's final score from the stored state, or (None, reason) when the state cannot serve it.

    Returns (-1.0, "") for an ineligible or removed row.
    """
    raw = row_values(matcher, state, row)
    if raw is None:
        return -1.0, ""
    for signal in ("text", "dense", "experience"):
        if signal in raw and signal in state.maxima and raw[signal] > state.maxima[signal][0] + 1e-12:
            return None, f"new {signal} maximum"
    values = {name: scaled(state, name, value) for name, value in raw.items()}
    if not state.network:
        return min(1.0, max(0.0, fuse(matcher, values))), ""
    first = fuse(matcher, values)
    if not state.full_seeds or first >= state.min_seed:
        return None, "enters the second-stage seeds"
    spread = joint_with_seeds(matcher, state, row)
    if spread > state.maxima["network"][0] + 1e-12:
        return None, "new network maximum"
    values["network"] = scaled(state, "network", spread)
    return min(1.0, max(0.0, fuse(matcher, values))), ""


def refresh_text_maximum(matcher: Matcher, state: TargetState) -> None:
    """Re-read the text maximum's raw score under the current idf (O(that row's profile))."""
    if "text" in state.maxima:
        _, row = state.maxima["text"]
        if row >= 0:
            state.maxima["text"] = (sum(matcher.terms.row_contributions(row, state.query).values()), row)


def place(
    company_id: str, score: float, current: Sequence[tuple[str, float]], top_n: int
) -> tuple[int | None, int | None, float | None]:
    """(old position, new position or None when outside the top N, old score) against ``current``."""
    old_pos, old_score = None, None
    for i, (cid, s) in enumerate(current):
        if cid == company_id:
            old_pos, old_score = i + 1, float(s)
            break
    ahead = sum(1 for cid, s in current if cid != company_id and (s > score or (s == score and cid < company_id)))
    new_pos = ahead + 1 if score >= 0 and ahead < top_n else None
    return old_pos, new_pos, old_score
