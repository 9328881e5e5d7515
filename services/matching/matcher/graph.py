"""Co-participation graph: who has worked with whom, from the partners listed in project histories.

Edges are not stored as a company x company matrix (100k² is out of the question and partners are
often names of organisations that are not registered yet). Instead each company row lists partner
*keys* (PIC or folded name) in a ``SparseField``; a key resolves to a row once a company with that
identity is indexed. Neighbours of a company are then (a) the owners of the keys it lists and
(b) the rows that list one of its own keys — both cheap for the handful of seed companies the
second ranking stage asks about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from services.matching.matcher.index import SparseField


class PartnerGraph:
    def __init__(self) -> None:
        self.listed = SparseField(compact_min_entries=100_000)
        self.key_owner: dict[str, int] = {}
        self.row_keys: dict[int, list[str]] = {}

    def set_row(self, row: int, keys: Sequence[str], partners: Mapping[str, float]) -> None:
        self.remove_row(row)
        self.row_keys[row] = list(keys)
        for key in keys:
            # First registration of an identity wins; a later duplicate does not steal its edges.
            self.key_owner.setdefault(key, row)
        self.listed.set_row(row, partners)

    def remove_row(self, row: int) -> None:
        for key in self.row_keys.pop(row, []):
            if self.key_owner.get(key) == row:
                del self.key_owner[key]
        self.listed.remove_row(row)

    def neighbours(self, row: int) -> dict[int, float]:
        """Row -> number of joint projects (counted from both sides' histories)."""
        out: dict[int, float] = {}
        for key, count in self.listed.row_counts(row).items():
            other = self.key_owner.get(key)
            if other is not None and other != row:
                out[other] = out.get(other, 0.0) + count
        _, ids = self.listed.term_ids(self.row_keys.get(row, []))
        if ids.size:
            rows, _, vals = self.listed.postings(ids)
            for other, count in zip(rows.tolist(), vals.tolist(), strict=True):
                if other != row:
                    out[other] = out.get(other, 0.0) + count
        return out

    def spread(
        self, seeds: npt.NDArray[np.int64], weights: npt.NDArray[np.float64], n_rows: int
    ) -> npt.NDArray[np.float64]:
        """Sum over seeds of weight x log(1 + joint projects): closeness to the likely core team.

        The log keeps one very frequent pair (two divisions of one group) from outweighing ties
        to several different seeds.
        """
        out = np.zeros(n_rows)
        for seed, weight in zip(seeds.tolist(), weights.tolist(), strict=True):
            for other, count in self.neighbours(seed).items():
                if other < n_rows:
                    out[other] += weight * np.log1p(count)
        return out

    def spread_to(
        self,
        row: int,
        seeds: Mapping[int, float],
        seed_keys: Mapping[int, Sequence[str]],
        seed_listed: Mapping[int, Mapping[str, float]],
    ) -> float:
        """``spread(seeds, weights)[row]`` for one row, in O(its keys x seeds).

        ``seed_keys`` / ``seed_listed`` are the seeds' own keys and partner counts as the graph holds
        them (taken once per target, so a check does not rebuild them). Joint projects are counted
        from both sides, as ``neighbours`` does: the seed's keys the row lists, and the keys the
        seed lists that the row owns.
        """
        listed = self.listed.row_counts(row)
        owned = [k for k in self.row_keys.get(row, []) if self.key_owner.get(k) == row]
        total = 0.0
        for seed, weight in seeds.items():
            if seed == row:
                continue
            count = sum(listed.get(k, 0.0) for k in seed_keys.get(seed, []))
            theirs = seed_listed.get(seed, {})
            count += sum(theirs.get(k, 0.0) for k in owned)
            if count:
                total += weight * math.log1p(count)
        return total

    def joint_projects(self, a: int, b: int) -> float:
        return self.neighbours(a).get(b, 0.0)
