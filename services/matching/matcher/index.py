"""An incrementally updatable sparse row x term index with vectorised BM25 scoring.

Why this shape: ranking 100k companies must take < 100 ms, but a single profile update must be
cheap. So the index has two segments, as search engines do:

* a **main** segment, a CSC matrix (rows x terms) built at compaction time, whose columns are
  posting lists that numpy can gather and score in one pass;
* an append-only **delta** of (row, term, value) entries written by upserts since the last
  compaction, scored by a vectorised membership test.

Every row carries a sequence number that an upsert or removal bumps; an entry (main or delta) counts
only while its sequence equals the row's current one. That is the tombstone: nothing is rewritten on
update, stale entries simply stop matching, and compaction drops them once the delta grows past a
fraction of the index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
from scipy import sparse

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _grow(array: npt.NDArray[np.generic], size: int, fill: float = 0) -> npt.NDArray[np.generic]:
    """Return ``array`` with capacity >= size (amortised doubling), keeping its contents."""
    if size <= array.shape[0]:
        return array
    capacity = max(size, 2 * array.shape[0], 16)
    out = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


class SparseField:
    """Rows x terms with term frequencies; rows are owned (allocated) by the caller."""

    def __init__(
        self,
        *,
        compact_min_entries: int = 200_000,
        compact_ratio: float = 0.10,
        bm25: tuple[float, float] | None = None,
    ) -> None:
        # With ``bm25=(k1, b)`` the main segment stores each entry's BM25 term-frequency saturation
        # (computed with the average length at compaction time), so a query is one sparse
        # matrix-vector product in scipy's C code instead of per-entry numpy work.
        self.bm25_params = bm25
        self._avg_at_compaction = 0.0
        self.vocab: dict[str, int] = {}
        self.terms: list[str] = []
        self.df = np.zeros(0, dtype=np.float64)
        self.row_terms: list[npt.NDArray[np.int32] | None] = []
        self.row_vals: list[npt.NDArray[np.float32] | None] = []
        self.row_len = np.zeros(0, dtype=np.float64)
        self.row_seq = np.zeros(0, dtype=np.int64)
        self.live_rows = 0
        self.total_len = 0.0
        self._main: sparse.csc_matrix | None = None
        self._main_seq = np.zeros(0, dtype=np.int64)
        self._d_rows = np.zeros(0, dtype=np.int64)
        self._d_terms = np.zeros(0, dtype=np.int64)
        self._d_vals = np.zeros(0, dtype=np.float64)
        self._d_seq = np.zeros(0, dtype=np.int64)
        self._d_size = 0
        self._main_nnz = 0
        self.compact_min_entries = compact_min_entries
        self.compact_ratio = compact_ratio
        self.generation = 0  # bumped by every compaction (BM25 length normaliser may move)

    # ---- writes -------------------------------------------------------------------------------
    def _ensure_rows(self, row: int) -> None:
        if row >= len(self.row_terms):
            extra = row + 1 - len(self.row_terms)
            self.row_terms.extend([None] * extra)
            self.row_vals.extend([None] * extra)
        self.row_len = _grow(self.row_len, row + 1)  # type: ignore[assignment]
        self.row_seq = _grow(self.row_seq, row + 1)  # type: ignore[assignment]

    def _term_ids(self, terms: Iterable[str]) -> list[int]:
        ids = []
        for term in terms:
            tid = self.vocab.get(term)
            if tid is None:
                tid = len(self.terms)
                self.vocab[term] = tid
                self.terms.append(term)
            ids.append(tid)
        self.df = _grow(self.df, len(self.terms))  # type: ignore[assignment]
        return ids

    def _forget(self, row: int) -> None:
        old = self.row_terms[row] if row < len(self.row_terms) else None
        if old is not None:
            self.df[old] -= 1.0
            self.total_len -= float(self.row_len[row])
            self.live_rows -= 1
        if row < len(self.row_terms):
            self.row_terms[row] = None
            self.row_vals[row] = None
            self.row_len[row] = 0.0
            self.row_seq[row] += 1

    def set_row(self, row: int, counts: Mapping[str, float]) -> None:
        """Replace a row's terms (an empty mapping keeps the row alive with no terms)."""
        self._ensure_rows(row)
        self._forget(row)
        ids = np.asarray(self._term_ids(counts.keys()), dtype=np.int32)
        vals = np.asarray(list(counts.values()), dtype=np.float32)
        self.row_terms[row] = ids
        self.row_vals[row] = vals
        self.row_len[row] = float(vals.sum())
        self.total_len += float(vals.sum())
        self.live_rows += 1
        if ids.size:
            self.df[ids] += 1.0
        self._append_delta(row, ids, vals)

    def remove_row(self, row: int) -> None:
        if row < len(self.row_terms):
            self._forget(row)

    def _append_delta(self, row: int, ids: npt.NDArray[np.int32], vals: npt.NDArray[np.float32]) -> None:
        n = ids.size
        end = self._d_size + n
        self._d_rows = _grow(self._d_rows, end)  # type: ignore[assignment]
        self._d_terms = _grow(self._d_terms, end)  # type: ignore[assignment]
        self._d_vals = _grow(self._d_vals, end)  # type: ignore[assignment]
        self._d_seq = _grow(self._d_seq, end)  # type: ignore[assignment]
        self._d_rows[self._d_size : end] = row
        self._d_terms[self._d_size : end] = ids
        self._d_vals[self._d_size : end] = vals
        self._d_seq[self._d_size : end] = self.row_seq[row]
        self._d_size = end
        if self._d_size > max(self.compact_min_entries, self.compact_ratio * self._main_nnz):
            self.compact()

    def compact(self) -> None:
        """Rebuild the main segment from the live rows and empty the delta (O(nnz))."""
        n_rows = len(self.row_terms)
        lengths = np.fromiter((0 if t is None else t.size for t in self.row_terms), dtype=np.int64, count=n_rows)
        live = [t for t in self.row_terms if t is not None]
        cols = np.concatenate(live).astype(np.int64) if live else np.zeros(0, dtype=np.int64)
        vals_list = [v for v in self.row_vals if v is not None]
        vals = np.concatenate(vals_list).astype(np.float64) if vals_list else np.zeros(0)
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
        self._avg_at_compaction = self.avg_len or 1.0
        if self.bm25_params is not None:
            vals = self._saturate(vals, self.row_len[rows])
        self._main = sparse.csc_matrix((vals, (rows, cols)), shape=(n_rows, max(1, len(self.terms))))
        self._main.sort_indices()
        self._main_seq = self.row_seq[:n_rows].copy()
        self._main_nnz = int(cols.size)
        self._d_size = 0
        self.generation += 1

    # ---- reads --------------------------------------------------------------------------------
    @property
    def avg_len(self) -> float:
        return self.total_len / self.live_rows if self.live_rows else 0.0

    @property
    def delta_entries(self) -> int:
        return self._d_size

    def term_ids(self, terms: Iterable[str]) -> tuple[list[str], IntArray]:
        known = [t for t in terms if t in self.vocab]
        return known, np.asarray([self.vocab[t] for t in known], dtype=np.int64)

    def postings(self, term_ids: IntArray) -> tuple[IntArray, IntArray, FloatArray]:
        """(row, position of the term in ``term_ids``, value) for every live entry of those terms."""
        parts_r: list[IntArray] = []
        parts_q: list[IntArray] = []
        parts_v: list[FloatArray] = []
        if self._main is not None and term_ids.size:
            in_main = term_ids < self._main.shape[1]
            qpos = np.flatnonzero(in_main)
            if qpos.size:
                indptr = self._main.indptr
                cols = term_ids[qpos]
                starts, ends = indptr[cols], indptr[cols + 1]
                counts = ends - starts
                total = int(counts.sum())
                if total:
                    # Gather all posting slices at once: offsets within each slice + slice start.
                    owner = np.repeat(np.arange(cols.size), counts)
                    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
                    idx = starts[owner] + offsets
                    rows = self._main.indices[idx].astype(np.int64)
                    valid = self._main_seq[rows] == self.row_seq[rows]
                    parts_r.append(rows[valid])
                    parts_q.append(qpos[owner][valid])
                    parts_v.append(self._main.data[idx][valid])
        if self._d_size and term_ids.size:
            d_terms = self._d_terms[: self._d_size]
            hit = np.flatnonzero(np.isin(d_terms, term_ids))
            if hit.size:
                rows = self._d_rows[hit]
                valid = self._d_seq[hit] == self.row_seq[rows]
                hit, rows = hit[valid], rows[valid]
                lookup = {int(t): i for i, t in enumerate(term_ids)}
                parts_r.append(rows)
                parts_q.append(np.fromiter((lookup[int(t)] for t in d_terms[hit]), dtype=np.int64, count=hit.size))
                parts_v.append(self._d_vals[hit])
        if not parts_r:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        return np.concatenate(parts_r), np.concatenate(parts_q), np.concatenate(parts_v)

    def idf(self, term_ids: IntArray) -> FloatArray:
        """BM25 idf (the non-negative Lucene form, so very common terms never count against a row)."""
        n = float(max(self.live_rows, 1))
        df = self.df[term_ids]
        return np.log1p((n - df + 0.5) / (df + 0.5))

    def _saturate(self, tf: FloatArray, lengths: FloatArray) -> FloatArray:
        k1, b = self.bm25_params or (1.2, 0.75)
        avg = self._avg_at_compaction or self.avg_len or 1.0
        return tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * lengths / avg))

    def bm25(self, query: Mapping[str, float], n_rows: int) -> FloatArray:
        """BM25 score of every row for a weighted query (weight multiplies the term's idf).

        Length normalisation uses the average profile length at the last compaction, so a fresh
        build and an incrementally updated index agree exactly once both are compacted.
        """
        if self.bm25_params is None:
            raise ValueError("this field was not built for BM25 (bm25=(k1, b))")
        scores = np.zeros(n_rows)
        terms, ids = self.term_ids(query.keys())
        if not terms:
            return scores
        weights = np.asarray([query[t] for t in terms]) * self.idf(ids)
        if self._main is not None:
            in_main = ids < self._main.shape[1]
            if in_main.any():
                part = self._main[:, ids[in_main]] @ weights[in_main]
                # Rows changed or removed since compaction: their main entries are stale.
                stale = self._main_seq != self.row_seq[: self._main_seq.size]
                part[stale] = 0.0
                scores[: part.size] += part[:n_rows]
        if self._d_size:
            d_terms = self._d_terms[: self._d_size]
            hit = np.flatnonzero(np.isin(d_terms, ids))
            if hit.size:
                rows = self._d_rows[hit]
                keep = self._d_seq[hit] == self.row_seq[rows]
                hit, rows = hit[keep], rows[keep]
                position = {int(t): i for i, t in enumerate(ids)}
                qpos = np.fromiter((position[int(t)] for t in d_terms[hit]), dtype=np.int64, count=hit.size)
                sat = self._saturate(self._d_vals[hit], self.row_len[rows])
                scores += np.bincount(rows, weights=weights[qpos] * sat, minlength=n_rows)[:n_rows]
        return scores

    def row_contributions(self, row: int, query: Mapping[str, float]) -> dict[str, float]:
        """Per-term BM25 contribution for one row: the words that carried its match."""
        ids = self.row_terms[row] if row < len(self.row_terms) else None
        vals = self.row_vals[row] if row < len(self.row_vals) else None
        if ids is None or vals is None:
            return {}
        k1, b = self.bm25_params or (1.2, 0.75)
        avg = self._avg_at_compaction or self.avg_len or 1.0
        norm = k1 * (1.0 - b + b * float(self.row_len[row]) / avg)
        n = float(max(self.live_rows, 1))
        out: dict[str, float] = {}
        for tid, tf in zip(ids.tolist(), vals.tolist(), strict=True):
            term = self.terms[tid]
            weight = query.get(term)
            if weight:
                df = float(self.df[tid])
                idf = math.log1p((n - df + 0.5) / (df + 0.5))
                out[term] = weight * idf * tf * (k1 + 1.0) / (tf + norm)
        return out

    def row_counts(self, row: int) -> dict[str, float]:
        ids = self.row_terms[row] if row < len(self.row_terms) else None
        vals = self.row_vals[row] if row < len(self.row_vals) else None
        if ids is None or vals is None:
            return {}
        return {self.terms[i]: float(v) for i, v in zip(ids.tolist(), vals.tolist(), strict=True)}

    def memory_bytes(self) -> int:
        total = sum(t.nbytes for t in self.row_terms if t is not None)
        total += sum(v.nbytes for v in self.row_vals if v is not None)
        if self._main is not None:
            total += self._main.data.nbytes + self._main.indices.nbytes + self._main.indptr.nbytes
        return total + self._d_rows.nbytes * 4
