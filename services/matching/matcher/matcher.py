"""The Matcher: an incrementally updated index of company profiles that ranks them for a target.

Ranking is a weighted average of per-company signals, each scaled to [0, 1] over the eligible
companies, so the final score is in [0, 1] and every part of it can be shown to a person:

text        BM25 of the target's text against the company's capabilities, keywords and project history
category    the company took part in projects of the same EDF category (topic-id code) before
network     second stage: joint past projects with the best candidates of the first stage
domain      share of the target's VISD domains the company works in            (weight 0, see below)
experience  how many funded projects the company has taken part in (track record)  (weight 0)
coordinator the company has coordinated projects before                          (weight 0)
dense       cosine of MiniLM embeddings (only when an encoder is supplied)

Weights come from the EDF benchmark under the temporal protocol (bench/matching; the ablation with
confidence intervals is in services/matching/README.md). A signal that did not move the interval
has weight 0: it is still computed when a caller gives it a weight, and never shown otherwise.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from services.matching.matcher.eligibility import check_eligibility, country_rules
from services.matching.matcher.embeddings import TextEncoder, embed_document
from services.matching.matcher.explain import Explainer
from services.matching.matcher.features import extract, profile_statements, profile_text
from services.matching.matcher.graph import PartnerGraph
from services.matching.matcher.index import SparseField, _grow
from services.matching.matcher.models import CompanyProfile, Suggestion, Target
from services.matching.matcher.scoring import (
    NORMALISED,
    RescoreCheck,
    TargetState,
    V,
    fuse,
    maximum,
    outcome,
    place,
    published,
    scale,
)
from services.matching.matcher.store import ProfileStore
from services.matching.matcher.text import BOILERPLATE_STEMS, query_weights, target_text
from shared.taxonomy_index import TaxonomyIndex, load_index
from shared.text import tokenize

FloatArray = npt.NDArray[np.float64]

SIGNALS: tuple[str, ...] = ("text", "domain", "category", "experience", "coordinator", "dense", "network")

DEFAULT_WEIGHTS: dict[str, float] = {
    "text": 1.0,
    "domain": 0.0,
    "category": 0.3,
    "experience": 0.0,
    "coordinator": 0.0,
    "dense": 0.5,
    "network": 0.4,
}


DEFAULT_TARGET_WEIGHTS: dict[str, dict[str, float]] = {"project": {"domain": 0.3}}
"""Per target type, weights that replace ``weights`` for targets of that type.

``weights`` are fitted on EDF calls, whose VISD domains are only derived from the topic's category
(already the ``category`` signal): there the domain signal adds nothing measurable. A project posted
by an institute (FSDB, VLAIO, DEFRA) carries domains a person chose, matched against the domains a
company declared; no other signal reads either, and a newly registered company has no history for
``category`` or ``network`` to use. So posted projects keep round 1's domain weight (services/matching/README.md,
"Weights per kind of target")."""


@dataclass(frozen=True)
class MatcherConfig:
    """Tunable knobs; the benchmark's ablation builds variants with ``without(signal)``."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    target_weights: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {kind: dict(w) for kind, w in DEFAULT_TARGET_WEIGHTS.items()}
    )
    k1: float = 1.2
    b: float = 0.75
    damp_boilerplate: bool = True
    sublinear_query: bool = True
    seeds: int = 10
    statement_weight: int = 2
    category_saturation: float = 3.0
    target_states: int = 1024  # per-target rescoring states kept (LRU), see scoring.py
    change_log: int = 4096  # recent upserts/removals remembered for rescoring states

    def without(self, signal: str) -> MatcherConfig:
        """The same configuration with ``signal`` off for every kind of target."""
        weights = dict(self.weights)
        weights[signal] = 0.0
        per_kind = {kind: {**w, signal: 0.0} if signal in w else dict(w) for kind, w in self.target_weights.items()}
        return replace(self, weights=weights, target_weights=per_kind)

    def weight(self, signal: str, target_type: str | None = None) -> float:
        """The signal's weight for targets of ``target_type`` (``weights`` when the type has no override)."""
        return float(self.weights_for(target_type).get(signal, 0.0))

    def weights_for(self, target_type: str | None) -> dict[str, float]:
        return {**self.weights, **self.target_weights.get(target_type or "", {})}

    def active(self, signal: str) -> bool:
        """Whether any kind of target gives the signal a weight."""
        return any(self.weight(signal, kind) > 0 for kind in (None, *self.target_weights))


class Matcher:
    """Index of company profiles; ``rank`` returns explained, eligible suggestions for a target."""

    ALGORITHM_VERSION = "bondgenoot-matcher/1.0"

    def __init__(
        self,
        config: MatcherConfig | None = None,
        *,
        taxonomy: TaxonomyIndex | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.config = config or MatcherConfig()
        self.taxonomy = taxonomy or load_index()
        self.rules = country_rules(self.taxonomy)
        self.encoder = encoder
        self.terms = SparseField(bm25=(self.config.k1, self.config.b))
        self.graph = PartnerGraph()
        self.store = ProfileStore(self.taxonomy, self.rules)
        self.rows: dict[str, int] = {}
        self.statements: list[list[str]] = []
        self.domain_sets: list[set[str]] = []
        self.category_topics: list[dict[str, list[str]]] = []  # per row: category -> earlier topic ids
        self.vectors = np.zeros((0, encoder.dim if encoder else 1), dtype=np.float32)
        self.version = 0  # bumped by every upsert/remove
        self._changes: deque[tuple[int, int]] = deque(maxlen=max(1, self.config.change_log))
        self._states: OrderedDict[str, TargetState] = OrderedDict()
        active = [s for s in SIGNALS if self.config.active(s) and (s != "dense" or encoder)]
        self.ALGORITHM_VERSION = f"{Matcher.ALGORITHM_VERSION} ({'+'.join(active)})"

    # ---- updates ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.store.alive[: self.store.n_rows].sum())

    def __contains__(self, company_id: object) -> bool:
        row = self.rows.get(str(company_id))
        return row is not None and bool(self.store.alive[row])

    def upsert(self, profile: CompanyProfile) -> None:
        """Add or replace one company: O(size of its profile), no re-index of the others."""
        row = self.rows.get(profile.id)
        if row is None:
            row = self.store.allocate(profile.id)
            self.rows[profile.id] = row
            self.statements.append([])
            self.domain_sets.append(set())
            self.category_topics.append({})
        features = extract(profile, self.taxonomy, statement_weight=self.config.statement_weight)
        self.terms.set_row(row, features.terms)
        self.graph.set_row(row, features.own_keys, features.partners)
        self.store.set_row(row, profile, features)
        self.statements[row] = profile_statements(profile)
        self.domain_sets[row] = features.domains
        self.category_topics[row] = features.category_topics
        if self.encoder is not None:
            self.vectors = _grow(self.vectors, row + 1)  # type: ignore[assignment]
            self.vectors[row] = embed_document(self.encoder, profile_text(profile))
        self._changed(row)

    def _changed(self, row: int) -> None:
        self.version += 1
        self._changes.append((self.version, row))

    def remove(self, company_id: str) -> None:
        row = self.rows.get(company_id)
        if row is None:
            return
        self.terms.remove_row(row)
        self.graph.remove_row(row)
        self.store.clear_row(row)
        self.statements[row] = []
        self.domain_sets[row] = set()
        self.category_topics[row] = {}
        self._changed(row)

    def compact(self) -> None:
        """Fold pending updates into the main segments (also happens on its own as they pile up)."""
        self.terms.compact()
        self.graph.listed.compact()

    def eligible(self, profile: CompanyProfile, target: Target) -> tuple[bool, str]:
        return check_eligibility(self.rules, profile, target)

    # ---- ranking ------------------------------------------------------------------------------
    def target_category(self, target: Target) -> str | None:
        code = (target.edf_category or "").upper() or None
        if code in self.taxonomy.category_domains:
            return code
        return self.taxonomy.category_of(target.id)

    def target_domains(self, target: Target, text: str) -> list[str]:
        known = [d for d in target.domains if d in self.taxonomy.domain_keywords]
        known += [d for d in self.taxonomy.domains_for_category(self.target_category(target)) if d not in known]
        return known or self.taxonomy.infer_domains(text)

    def query(self, target: Target, text: str) -> dict[str, float]:
        tokens = tokenize(text)
        # Sought capabilities are the target's explicit needs: they count twice.
        for need in target.sought_capabilities:
            tokens += tokenize(need) * 2
        if self.config.sublinear_query:
            boiler = BOILERPLATE_STEMS if self.config.damp_boilerplate else frozenset()
            return query_weights(tokens, boiler)
        return {t: float(c) for t, c in Counter(tokens).items()}

    def _plan(self, target: Target) -> TargetState:
        """Everything about the target that scoring needs, derived once: query, columns, embedding."""
        weights = self.config.weights_for(target.target_type)
        text = target_text(target)
        domains = self.target_domains(target, text)
        category = self.target_category(target)
        present = [s for s in ("text", "experience", "coordinator") if weights.get(s, 0.0) > 0]
        if weights.get("domain", 0.0) > 0 and domains:
            present.append("domain")
        if weights.get("category", 0.0) > 0 and category is not None:
            present.append("category")
        vector = None
        if weights.get("dense", 0.0) > 0 and self.encoder is not None:
            present.append("dense")
            vector = embed_document(self.encoder, text)
        key, fingerprint = self._target_key(target)
        return TargetState(
            key=key,
            fingerprint=fingerprint,
            version=self.version,
            generation=self.terms.generation,
            programme=target.programme,
            query=self.query(target, text),
            domain_cols=[self.store.domain_col[d] for d in domains],
            category_col=self.store.category_col.get(category) if category else None,
            present=tuple(s for s in SIGNALS if s in present),
            weights=weights,
            vector=vector,
        )

    @overload
    def _raw(self, plan: TargetState, row: None) -> dict[str, FloatArray]: ...
    @overload
    def _raw(self, plan: TargetState, row: int) -> dict[str, float]: ...
    def _raw(self, plan: TargetState, row: int | None) -> dict[str, FloatArray] | dict[str, float]:
        """First-stage signals of every row (``row`` None) or of one row; max-normalised ones still raw.

        The one place each signal's formula lives: full rankings evaluate it on every row, the cheap
        rescoring of one changed company on that row alone (numpy scalars, no per-call arrays).
        """
        store, n, cfg = self.store, self.store.n_rows, self.config
        pick: int | slice = slice(0, n) if row is None else row
        out: dict[str, Any] = {}  # arrays for every row, numpy float64 scalars for one
        for signal in plan.present:
            if signal == "text":
                if row is None:
                    out[signal] = self.terms.bm25(plan.query, n)
                else:
                    out[signal] = float(sum(self.terms.row_contributions(row, plan.query).values()))
            elif signal == "domain":
                bits = store.domain_bits[pick][..., plan.domain_cols]
                out[signal] = bits.sum(axis=-1, dtype=np.float64) / len(plan.domain_cols)
            elif signal == "category":
                counts = store.category_counts[pick, plan.category_col].astype(np.float64)
                out[signal] = np.minimum(1.0, np.log1p(counts) / np.log1p(cfg.category_saturation))
            elif signal == "experience":
                out[signal] = store.projects[pick]
            elif signal == "coordinator":
                out[signal] = np.minimum(1.0, store.coordinated[pick] / 2.0)
            elif signal == "dense" and plan.vector is not None:
                out[signal] = (self.vectors[pick] @ plan.vector).astype(np.float64)
        return out

    def _scaled(self, raw: Mapping[str, V], maxima: Mapping[str, tuple[float, int]]) -> dict[str, V]:
        return {s: scale(s, v, maxima[s][0]) if s in NORMALISED else v for s, v in raw.items()}

    def scores(self, target: Target) -> tuple[FloatArray, npt.NDArray[np.bool_], dict[str, FloatArray], TargetState]:
        """Final score per row (ineligible rows -1), the mask, the signals and the target's state.

        The state (query, normalisers, second-stage seeds) is also kept for cheap rescoring.
        """
        n = self.store.n_rows
        mask = self.store.mask(target.programme)
        state = self._plan(target)
        raw = self._raw(state, None)
        state.maxima = {s: maximum(v, mask) for s, v in raw.items() if s in NORMALISED}
        signals = self._scaled(raw, state.maxima)
        stage1 = fuse(state.weights, signals, np.zeros(n))
        if state.weights.get("network", 0.0) > 0 and self.config.seeds > 0 and mask.any():
            eligible = np.flatnonzero(mask)
            k = min(self.config.seeds, eligible.size)
            seeds = eligible[np.argpartition(-stage1[eligible], k - 1)[:k]]
            # A seed weighs its first-stage score: one that scored 0 spreads nothing, so it is not one.
            seeds = seeds[stage1[seeds] > 0]
            spread = self.graph.spread(seeds.astype(np.int64), stage1[seeds], n)
            spread[seeds] = np.maximum(spread[seeds], 0.0)
            state.maxima["network"] = maximum(spread, mask)
            signals["network"] = scale("network", spread, state.maxima["network"][0])
            state.network = True
            state.seeds = {int(r): float(stage1[r]) for r in seeds}
            state.min_seed = float(stage1[seeds].min()) if seeds.size else math.inf
            state.full_seeds = seeds.size == self.config.seeds
            c = min(2 * k, eligible.size)
            state.contenders = eligible[np.argpartition(-stage1[eligible], c - 1)[:c]].tolist()
            state.live_rows = self.terms.live_rows
            # The seeds' partner lists, for the network signal of one changed row (graph.spread_to).
            state.seed_keys = {int(r): list(self.graph.row_keys.get(int(r), [])) for r in seeds}
            state.seed_listed = {int(r): self.graph.listed.row_counts(int(r)) for r in seeds}
        self._remember(state)
        final = np.clip(fuse(state.weights, signals, np.zeros(n)), 0.0, 1.0)
        final[~mask] = -1.0
        return final, mask, signals, state

    # ---- cheap rescoring when one company changes (see scoring.py) -----------------------------
    @staticmethod
    def _target_key(target: Target) -> tuple[str, str]:
        fingerprint = hashlib.blake2b(target.model_dump_json().encode(), digest_size=16).hexdigest()
        return f"{target.target_type}:{target.id}", fingerprint

    def _remember(self, state: TargetState) -> None:
        if self.config.target_states <= 0:
            return
        key = state.key
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self.config.target_states:
            self._states.popitem(last=False)

    def _state_for(self, target: Target) -> TargetState | None:
        key, fingerprint = self._target_key(target)
        state = self._states.get(key)
        if state is None or state.fingerprint != fingerprint or state.generation != self.terms.generation:
            return None
        self._states.move_to_end(key)
        return state

    def _changed_since(self, version: int) -> list[int] | None:
        """Rows changed after ``version`` (oldest first), None when the log no longer reaches back."""
        if version >= self.version:
            return []
        if not self._changes or self._changes[0][0] > version + 1:
            return None
        rows: list[int] = []
        for v, row in reversed(self._changes):
            if v <= version:
                break
            rows.append(row)
        return rows[::-1]

    def rescore_check(
        self, target: Target, company_id: str, current: Sequence[tuple[str, float]], top_n: int = 20
    ) -> RescoreCheck:
        """Did ``company_id`` enter, leave, or move (position or 4-decimal score) in the top ``top_n``?

        ``current`` is the published ranking of the target, best first, as (company id, score). Call
        it after the company's upsert or removal. Costs O(size of the company's profile) unless the
        change touches the target's normalisers or second-stage seeds (or no state is stored for the
        target yet), in which case the target is scored in full once, without explanations — see
        ``scoring.py`` for the exactness trade-off. ``rank`` is needed only when ``changed`` is True.
        """
        row = self.rows.get(company_id)
        if row is None:  # never indexed: it cannot be in a ranking computed by this matcher
            old_pos, old_score = published(company_id, current)
            return outcome(old_pos, old_score, None, -1.0, "cheap", "unknown company")
        state = self._state_for(target)
        score, reason = self._cheap(state, row) if state is not None else (None, "no stored state for this target")
        if score is None:
            return self._full_check(target, row, current, top_n, reason)
        score = round(score, 6) if score >= 0 else -1.0
        old_pos, new_pos, old_score = place(company_id, score, current, top_n)
        if (
            old_pos is not None
            and new_pos is not None
            and new_pos == len(current) >= top_n
            and old_score is not None
            and score < old_score
        ):
            # It fell to the last place of a full list: the first company outside the list, whose
            # score is not known here, may now be ahead of it. Rank again.
            return RescoreCheck(True, new_pos, score, "cheap", "fell to the last place")
        return outcome(old_pos, old_score, new_pos, score, "cheap", "")

    def _cheap(self, state: TargetState, row: int) -> tuple[float | None, str]:
        """The row's new final score from the stored state, or (None, why the state cannot serve)."""
        changed = self._changed_since(state.version)
        if changed is None:
            return None, "change log does not reach back to the stored state"
        if set(changed) & state.fragile_rows():
            return None, "a changed company holds a normaliser or is a second-stage seed"
        if "text" in state.maxima and state.maxima["text"][1] >= 0:
            # idf moved with every upsert: re-read the text maximum under the current idf.
            at = state.maxima["text"][1]
            state.maxima["text"] = (float(self._raw(state, at)["text"]), at)
        if state.network and not self._reseed(state):
            return None, "idf moved and the second-stage seeds reordered"
        score: float | None = None
        # Every change since the state was taken must leave the normalisers and seeds alone.
        for r in dict.fromkeys([*changed, row]):
            value, why = self._score_row(state, r)
            if value is None:
                return None, why
            if r == row:
                score = value
        state.version = self.version
        return score, ""

    def _stage1_row(self, state: TargetState, row: int) -> float:
        return fuse(state.weights, self._scaled(self._raw(state, row), state.maxima), 0.0)

    def _reseed(self, state: TargetState) -> bool:
        """Re-score the seed contenders under the current idf; False when the seeds would change."""
        fresh = {r: self._stage1_row(state, r) for r in state.contenders if self.store.eligible_row(r, state.programme)}
        best = [r for r in sorted(fresh, key=lambda r: -fresh[r])[: len(state.seeds)] if fresh[r] > 0]
        if set(best) != set(state.seeds):
            return False
        state.seeds = {r: fresh[r] for r in state.seeds}
        state.min_seed = min(state.seeds.values(), default=math.inf)  # no seeds: as when scored in full
        state.live_rows = self.terms.live_rows
        return True

    def _score_row(self, state: TargetState, row: int) -> tuple[float | None, str]:
        """One row's final score under the stored normalisers and seeds; -1 when not eligible.

        None (with the reason) when the row would move a normaliser or join the seeds: then every
        other score moves too and only a full scoring is right.
        """
        if not self.store.eligible_row(row, state.programme):
            return -1.0, ""
        raw = self._raw(state, row)
        for signal in ("text", "dense", "experience"):
            if signal in raw and float(raw[signal]) > state.maxima[signal][0] + 1e-12:
                return None, f"new {signal} maximum"
        signals = self._scaled(raw, state.maxima)
        if state.network:
            first = fuse(state.weights, signals, 0.0)
            if first > 0 and (not state.full_seeds or first >= state.min_seed):
                return None, "enters the second-stage seeds"
            spread = self.graph.spread_to(row, state.seeds, state.seed_keys, state.seed_listed)
            if spread > state.maxima["network"][0] + 1e-12:
                return None, "new network maximum"
            signals["network"] = scale("network", spread, state.maxima["network"][0])
        return min(1.0, max(0.0, float(fuse(state.weights, signals, 0.0)))), ""

    def _full_check(
        self, target: Target, row: int, current: Sequence[tuple[str, float]], top_n: int, reason: str
    ) -> RescoreCheck:
        final, mask, _, _ = self.scores(target)  # also stores a fresh state for the target
        cid = self.store.ids[row]
        old_pos, old_score = published(cid, current)
        if not mask[row]:
            return outcome(old_pos, old_score, None, -1.0, "full", reason)
        value = float(final[row])
        ahead = int((final[mask] > value).sum())
        ahead += sum(1 for r in np.flatnonzero(mask & (final == value)).tolist() if self.store.ids[r] < cid)
        new_pos = ahead + 1 if ahead < top_n else None
        return outcome(old_pos, old_score, new_pos, round(value, 6), "full", reason)

    def would_change(
        self, target: Target, company_id: str, current: Sequence[tuple[str, float]], top_n: int = 20
    ) -> bool:
        """``rescore_check(...).changed``: does the target need a new ranking after this company changed?"""
        return self.rescore_check(target, company_id, current, top_n).changed

    def rank(self, target: Target, top_n: int = 20) -> list[Suggestion]:
        """The ``top_n`` best eligible companies for the target, best first, with reasons."""
        if self.store.n_rows == 0 or top_n <= 0:
            return []
        final, mask, signals, state = self.scores(target)
        eligible = np.flatnonzero(mask)
        if eligible.size == 0:
            return []
        k = min(top_n, eligible.size)
        best = eligible[np.argpartition(-final[eligible], k - 1)[:k]]
        # Stable order: score, then id, so equal scores do not reshuffle between runs.
        ordered = sorted(best.tolist(), key=lambda r: (-final[r], self.store.ids[r]))
        context = Explainer(self, target, state, signals)
        return [context.suggestion(r, i + 1, float(final[r])) for i, r in enumerate(ordered)]

    def idf(self, term: str) -> float:
        tid = self.terms.vocab.get(term)
        n = float(max(self.terms.live_rows, 1))
        df = float(self.terms.df[tid]) if tid is not None else 0.0
        return math.log1p((n - df + 0.5) / (df + 0.5))

    def memory_bytes(self) -> int:
        return (
            self.terms.memory_bytes()
            + self.graph.listed.memory_bytes()
            + self.store.memory_bytes()
            + self.vectors.nbytes
        )
