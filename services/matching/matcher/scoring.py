"""What scoring one target needs and keeps: its plan, the normalisers, the second-stage seeds.

The Matcher scores a target with one set of signal formulas, one scaling and one fusion, evaluated
either on every row (``rank``) or on a single changed row (``rescore_check``). This module holds the
pieces both paths share: the per-target state and the pure scaling and fusion functions.

Cheap rescoring. When one company is upserted or removed, the service asks, for every open target,
whether that company enters, leaves or moves in the published top N. The Matcher answers from the
state of the target's last full scoring: the company's signals are computed on its own row only,
scaled with the stored **normalisers** (for every max-normalised signal the raw maximum over the
eligible companies and the row holding it), given its network signal from the stored **seeds**, fused,
and its new score is placed among the published scores.

Exactness. Max-normalisation means a new maximum rescales everybody, and the second stage means a new
seed changes everybody's network signal. So the state is *fragile* in a few rows: when a changed row
holds one of the maxima, is a seed, or would now exceed a maximum or enter the seeds, the cheap path
is not taken and the target is scored in full once, which also refreshes the state. Every change
since the state was taken is checked this way (the Matcher keeps a bounded log of changed rows; a
state older than the log, a changed target, or a compaction of the text index — which moves the BM25
length normaliser — also force the full path).

A company that registers or leaves changes the number of companies, so every term's idf moves a
little and the first-stage order of near-tied seeds can swap (which moves everybody's network
signal): then the contenders for the seeds (the best 2 x seeds of the first stage) are re-scored, and
the full path is taken when the seeds are no longer the best of them.

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
from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
V = TypeVar("V", FloatArray, float)
"""A signal over every row, or its value for one row (numpy's float64 scalars are floats)."""

NORMALISED: tuple[str, ...] = ("text", "dense", "experience", "network")
"""Signals scaled by their maximum over the eligible companies (the fragile normalisers)."""


@dataclass
class TargetState:
    """A target's scoring plan, plus the normalisers and seeds of its last full scoring."""

    key: str  # "target_type:id"
    fingerprint: str  # hash of the target's content: an edited target gets a fresh state
    version: int  # Matcher.version when the state was taken (or last brought up to date)
    generation: int  # text-index compaction generation (BM25 length normaliser)
    programme: str
    query: dict[str, float]
    domain_cols: list[int]
    category_col: int | None
    present: tuple[str, ...]  # first-stage signals scored for this target, in fusion order
    weights: dict[str, float]  # the signal weights for this kind of target (MatcherConfig.weights_for)
    vector: npt.NDArray[np.float32] | None = None  # target embedding when the dense signal is on
    maxima: dict[str, tuple[float, int]] = field(default_factory=dict)  # signal -> (raw max, its row)
    seeds: dict[int, float] = field(default_factory=dict)  # seed row -> its first-stage score
    seed_keys: dict[int, list[str]] = field(default_factory=dict)  # seed -> its own identity keys
    seed_listed: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> partner key counts
    min_seed: float = math.inf  # lowest first-stage score among the seeds
    full_seeds: bool = False  # True when there were at least ``seeds`` eligible rows
    contenders: list[int] = field(default_factory=list)  # the best 2 x seeds first-stage rows (seeds included)
    live_rows: int = 0  # companies in the text index when the seeds were chosen (idf's N)
    network: bool = False  # the second stage ran for this target

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


def maximum(raw: FloatArray, mask: npt.NDArray[np.bool_]) -> tuple[float, int]:
    """(raw maximum over the masked rows, the row holding it; -1 when none or when it is 0)."""
    eligible = np.flatnonzero(mask)
    if eligible.size == 0:
        return 0.0, -1
    at = int(eligible[int(np.argmax(raw[eligible]))])
    top = float(raw[at])
    return top, at if top > 0 else -1


def scale(signal: str, raw: V, top: float) -> V:
    """A max-normalised signal in [0, 1]; experience on a log scale (one prime would squash the rest)."""
    if top <= 0:
        return 0.0 if isinstance(raw, float) else np.zeros(raw.shape[0])
    if signal == "experience":
        return np.log1p(raw) / np.log1p(top)  # type: ignore[no-any-return]
    return raw / top


def fuse(weights: Mapping[str, float], signals: Mapping[str, V], zero: V) -> V:
    """Weighted average of the signals present: the one fusion of full ranking and rescoring.

    ``zero`` is ``np.zeros(n)`` for every row at once or ``0.0`` for a single row.
    """
    total = zero
    weight = 0.0
    for name, values in signals.items():
        w = float(weights.get(name, 0.0))
        total = total + w * values
        weight += w
    return total / weight if weight else total


def place(
    company_id: str, score: float, current: Sequence[tuple[str, float]], top_n: int
) -> tuple[int | None, int | None, float | None]:
    """(old position, new position or None when outside the top N, old score) against ``current``."""
    old_pos, old_score = published(company_id, current)
    ahead = sum(1 for cid, s in current if cid != company_id and (s > score or (s == score and cid < company_id)))
    new_pos = ahead + 1 if score >= 0 and ahead < top_n else None
    return old_pos, new_pos, old_score


def published(company_id: str, current: Sequence[tuple[str, float]]) -> tuple[int | None, float | None]:
    """(1-based position, score) of the company in the published ranking, or (None, None)."""
    for i, (cid, score) in enumerate(current):
        if cid == company_id:
            return i + 1, float(score)
    return None, None


def outcome(
    old_pos: int | None, old_score: float | None, new_pos: int | None, score: float, path: str, reason: str
) -> RescoreCheck:
    """Compare old and new (position, 4-decimal score), as the service does before republishing."""
    before = None if old_pos is None else (old_pos, round(old_score or 0.0, 4))
    after = None if new_pos is None else (new_pos, round(score, 4))
    return RescoreCheck(
        changed=before != after,
        position=new_pos,
        score=None if score < 0 else score,
        path=path,
        reason=reason,
    )
