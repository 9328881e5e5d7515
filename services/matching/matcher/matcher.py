"""The Matcher: an incrementally updated index of company profiles that ranks them for a target.

Ranking is a weighted average of per-company signals, each scaled to [0, 1] over the eligible
companies, so the final score is in [0, 1] and every part of it can be shown to a person:

text        BM25 of the target's text against the company's capabilities, keywords and project history
domain      share of the target's VISD domains the company works in
category    the company took part in projects of the same EDF category (topic-id code) before
experience  how many funded projects the company has taken part in (track record)
coordinator the company has coordinated projects before
dense       cosine of MiniLM embeddings (only when an encoder is supplied)
network     second stage: joint past projects with the best candidates of the first stage

Weights come from the EDF benchmark (bench/matching, see services/matching/README.md).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from services.matching.matcher.eligibility import check_eligibility, country_rules
from services.matching.matcher.embeddings import TextEncoder, embed_document
from services.matching.matcher.explain import (
    capability_matches,
    summary_line,
    surface_forms,
    top_terms,
)
from services.matching.matcher.features import extract, profile_statements, profile_text
from services.matching.matcher.graph import PartnerGraph
from services.matching.matcher.index import SparseField, _grow
from services.matching.matcher.models import CompanyProfile, Reasons, Suggestion, Target
from services.matching.matcher.rescore import (
    NORMALISED,
    RescoreCheck,
    TargetState,
    cheap_score,
    place,
    refresh_text_maximum,
)
from services.matching.matcher.store import ProfileStore
from services.matching.matcher.taxonomy import Taxonomy, load_taxonomy
from services.matching.matcher.text import BOILERPLATE_STEMS, query_weights, strip_html, tokenize

FloatArray = npt.NDArray[np.float64]

SIGNALS: tuple[str, ...] = ("text", "domain", "category", "experience", "coordinator", "dense", "network")

DEFAULT_WEIGHTS: dict[str, float] = {
    "text": 1.0,
    "domain": 0.3,
    "category": 0.6,
    "experience": 0.6,
    "coordinator": 0.0,
    "dense": 0.5,
    "network": 0.4,
}


@dataclass(frozen=True)
class MatcherConfig:
    """Tunable knobs; the benchmark's ablation builds variants with ``without(signal)``."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    k1: float = 1.2
    b: float = 0.75
    damp_boilerplate: bool = True
    sublinear_query: bool = True
    seeds: int = 10
    statement_weight: int = 2
    category_saturation: float = 3.0
    normalisation: str = "max"
    target_states: int = 1024  # per-target rescoring states kept (LRU), see rescore.py
    change_log: int = 4096  # recent upserts/removals remembered for rescoring states

    def without(self, signal: str) -> MatcherConfig:
        weights = dict(self.weights)
        weights[signal] = 0.0
        return replace(self, weights=weights)

    def weight(self, signal: str) -> float:
        return float(self.weights.get(signal, 0.0))


def _normalise(raw: FloatArray, mask: npt.NDArray[np.bool_], how: str) -> FloatArray:
    """Scale a raw signal to [0, 1] using only the eligible companies' values."""
    values = raw[mask]
    if values.size == 0:
        return np.zeros_like(raw)
    if how == "max":
        top = float(values.max())
        return raw / top if top > 0 else np.zeros_like(raw)
    # Logistic of the z-score: a long tail (one company with a huge profile) does not squash the rest.
    mean, std = float(values.mean()), float(values.std())
    if std == 0:
        return np.zeros_like(raw)
    return 1.0 / (1.0 + np.exp(-(raw - mean) / std))


def target_text(target: Target) -> str:
    parts = [target.title, target.summary, strip_html(target.description)]
    return "\n".join(p for p in parts if p)


class Matcher:
    """Index of company profiles; ``rank`` returns explained, eligible suggestions for a target."""

    ALGORITHM_VERSION = "bondgenoot-matcher/1.0"

    def __init__(
        self,
        config: MatcherConfig | None = None,
        *,
        taxonomy: Taxonomy | None = None,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.config = config or MatcherConfig()
        self.taxonomy = taxonomy or load_taxonomy()
        self.rules = country_rules(self.taxonomy)
        self.encoder = encoder
        self.terms = SparseField(bm25=(self.config.k1, self.config.b))
        self.graph = PartnerGraph()
        self.store = ProfileStore(self.taxonomy, self.rules)
        self.rows: dict[str, int] = {}
        self.statements: list[list[str]] = []
        self.domain_sets: list[set[str]] = []
        self.vectors = np.zeros((0, encoder.dim if encoder else 1), dtype=np.float32)
        self.version = 0  # bumped by every upsert/remove
        self._changes: deque[tuple[int, int]] = deque(maxlen=max(1, self.config.change_log))
        self._states: OrderedDict[str, TargetState] = OrderedDict()
        active = [s for s in SIGNALS if self.config.weight(s) > 0 and (s != "dense" or encoder)]
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
        features = extract(profile, self.taxonomy, statement_weight=self.config.statement_weight)
        self.terms.set_row(row, features.terms)
        self.graph.set_row(row, features.own_keys, features.partners)
        self.store.set_row(row, profile, features)
        self.statements[row] = profile_statements(profile)
        self.domain_sets[row] = features.domains
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

    def signals(
        self, target: Target, mask: npt.NDArray[np.bool_], maxima: dict[str, tuple[float, int]] | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, float]]:
        """Every signal for every row, each in [0, 1]; plus the query (for explanations).

        ``maxima`` (when given) receives, per max-normalised signal, the raw maximum over the eligible
        rows and the row holding it: the normalisers a cheap rescoring needs (rescore.py).
        """
        cfg, store = self.config, self.store
        record = _Maxima(mask, maxima)
        n = store.n_rows
        text = target_text(target)
        query = self.query(target, text)
        out: dict[str, FloatArray] = {}
        if cfg.weight("text") > 0:
            raw = self.terms.bm25(query, n)
            record("text", raw)
            out["text"] = _normalise(raw, mask, cfg.normalisation)
        domains = self.target_domains(target, text)
        if cfg.weight("domain") > 0 and domains:
            cols = [store.domain_col[d] for d in domains]
            out["domain"] = store.domain_bits[:n][:, cols].mean(axis=1).astype(np.float64)
        category = self.target_category(target)
        if cfg.weight("category") > 0 and category is not None:
            counts = store.category_counts[:n, store.category_col[category]].astype(np.float64)
            out["category"] = np.minimum(1.0, np.log1p(counts) / np.log1p(cfg.category_saturation))
        if cfg.weight("experience") > 0:
            projects = store.projects[:n]
            record("experience", projects)
            top = float(projects[mask].max()) if mask.any() else 0.0
            out["experience"] = np.log1p(projects) / np.log1p(top) if top > 0 else np.zeros(n)
        if cfg.weight("coordinator") > 0:
            out["coordinator"] = np.minimum(1.0, store.coordinated[:n] / 2.0)
        if cfg.weight("dense") > 0 and self.encoder is not None:
            vector = embed_document(self.encoder, text)
            cosine = self.vectors[:n] @ vector
            record("dense", cosine.astype(np.float64))
            out["dense"] = _normalise(cosine.astype(np.float64), mask, cfg.normalisation)
        return out, query

    def _fuse(self, signals: Mapping[str, FloatArray], n: int) -> FloatArray:
        total = np.zeros(n)
        weight = 0.0
        for name, values in signals.items():
            w = self.config.weight(name)
            total += w * values
            weight += w
        return total / weight if weight else total

    def scores(
        self, target: Target
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], dict[str, FloatArray], dict[str, float]]:
        """Final score per row (ineligible rows -1), the mask, the signals and the query."""
        final, mask, signals, query = self._score(target)
        return final, mask, signals, query

    def _score(
        self, target: Target
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], dict[str, FloatArray], dict[str, float]]:
        """``scores``, and the target's rescoring state is stored on the way (rescore.py)."""
        n = self.store.n_rows
        mask = self.store.mask(target.programme)
        maxima: dict[str, tuple[float, int]] = {}
        signals, query = self.signals(target, mask, maxima)
        state = self._new_state(target, query, tuple(signals), maxima)
        stage1 = self._fuse(signals, n)
        if self.config.weight("network") > 0 and self.config.seeds > 0 and mask.any():
            eligible = np.flatnonzero(mask)
            k = min(self.config.seeds, eligible.size)
            seeds = eligible[np.argpartition(-stage1[eligible], k - 1)[:k]]
            spread = self.graph.spread(seeds.astype(np.int64), stage1[seeds], n)
            spread[seeds] = np.maximum(spread[seeds], 0.0)
            _Maxima(mask, state.maxima)("network", spread)
            top = float(spread[mask].max()) if mask.any() else 0.0
            signals["network"] = spread / top if top > 0 else np.zeros(n)
            state.network = True
            state.seeds = {int(r): float(stage1[r]) for r in seeds}
            state.min_seed = float(stage1[seeds].min())
            state.full_seeds = k == self.config.seeds
            state.seed_listed = {int(r): self.graph.listed.row_counts(int(r)) for r in seeds}
            state.seed_keys = {int(r): list(self.graph.row_keys.get(int(r), [])) for r in seeds}
        self._remember(state)
        final = np.clip(self._fuse(signals, n), 0.0, 1.0)
        final[~mask] = -1.0
        return final, mask, signals, query

    # ---- cheap rescoring when one company changes (see rescore.py) -----------------------------
    @staticmethod
    def _target_key(target: Target) -> tuple[str, str]:
        fingerprint = hashlib.blake2b(target.model_dump_json().encode(), digest_size=16).hexdigest()
        return f"{target.target_type}:{target.id}", fingerprint

    def _new_state(
        self, target: Target, query: dict[str, float], present: tuple[str, ...], maxima: dict[str, tuple[float, int]]
    ) -> TargetState:
        text = target_text(target)
        domains = self.target_domains(target, text)
        category = self.target_category(target)
        vector = None
        if "dense" in present and self.encoder is not None:
            vector = embed_document(self.encoder, text).astype(np.float64)
        key, fingerprint = self._target_key(target)
        return TargetState(
            key=key,
            fingerprint=fingerprint,
            version=self.version,
            generation=self.terms.generation,
            programme=target.programme,
            query=dict(query),
            domain_cols=[self.store.domain_col[d] for d in domains],
            category_col=self.store.category_col.get(category) if category else None,
            stage1=present,
            maxima={k: v for k, v in maxima.items() if k in NORMALISED},
            vector=vector,
        )

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
        ``rescore.py`` for the exactness trade-off. ``rank`` is needed only when ``changed`` is True.
        """
        row = self.rows.get(company_id)
        if row is None:  # never indexed: it cannot be in a ranking computed by this matcher
            old_pos, old_score = _old(company_id, current)
            return _check(old_pos, old_score, None, -1.0, "cheap", "unknown company")
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
        return _check(old_pos, old_score, new_pos, score, "cheap", "")

    def _cheap(self, state: TargetState, row: int) -> tuple[float | None, str]:
        """The row's new final score from the stored state, or (None, why the state cannot serve)."""
        changed = self._changed_since(state.version)
        if changed is None:
            return None, "change log does not reach back to the stored state"
        if set(changed) & state.fragile_rows():
            return None, "a changed company holds a normaliser or is a second-stage seed"
        refresh_text_maximum(self, state)
        score: float | None = None
        # Every change since the state was taken must leave the normalisers and seeds alone.
        for r in dict.fromkeys([*changed, row]):
            value, why = cheap_score(self, state, r)
            if value is None:
                return None, why
            if r == row:
                score = value
        state.version = self.version
        return score, ""

    def _full_check(
        self, target: Target, row: int, current: Sequence[tuple[str, float]], top_n: int, reason: str
    ) -> RescoreCheck:
        final, mask, _, _ = self._score(target)  # also stores a fresh state for the target
        cid = self.store.ids[row]
        old_pos, old_score = _old(cid, current)
        if not mask[row]:
            return _check(old_pos, old_score, None, -1.0, "full", reason)
        value = float(final[row])
        ahead = int((final[mask] > value).sum())
        ahead += sum(1 for r in np.flatnonzero(mask & (final == value)).tolist() if self.store.ids[r] < cid)
        new_pos = ahead + 1 if ahead < top_n else None
        return _check(old_pos, old_score, new_pos, round(value, 6), "full", reason)

    def would_change(
        self, target: Target, company_id: str, current: Sequence[tuple[str, float]], top_n: int = 20
    ) -> bool:
        """``rescore_check(...).changed``: does the target need a new ranking after this company changed?"""
        return self.rescore_check(target, company_id, current, top_n).changed

    def rank(self, target: Target, top_n: int = 20) -> list[Suggestion]:
        """The ``top_n`` best eligible companies for the target, best first, with reasons."""
        if self.store.n_rows == 0 or top_n <= 0:
            return []
        final, mask, signals, query = self._score(target)
        eligible = np.flatnonzero(mask)
        if eligible.size == 0:
            return []
        k = min(top_n, eligible.size)
        best = eligible[np.argpartition(-final[eligible], k - 1)[:k]]
        # Stable order: score, then id, so equal scores do not reshuffle between runs.
        ordered = sorted(best.tolist(), key=lambda r: (-final[r], self.store.ids[r]))
        context = _Explainer(self, target, query, signals)
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


class _Maxima:
    """Records (raw maximum over the eligible rows, its row) of a signal into ``out`` when given."""

    def __init__(self, mask: npt.NDArray[np.bool_], out: dict[str, tuple[float, int]] | None) -> None:
        self.mask = mask
        self.out = out

    def __call__(self, signal: str, raw: FloatArray) -> None:
        if self.out is None:
            return
        eligible = np.flatnonzero(self.mask)
        if eligible.size == 0:
            self.out[signal] = (0.0, -1)
            return
        at = int(eligible[int(np.argmax(raw[eligible]))])
        top = float(raw[at])
        self.out[signal] = (top, at if top > 0 else -1)


def _old(company_id: str, current: Sequence[tuple[str, float]]) -> tuple[int | None, float | None]:
    for i, (cid, score) in enumerate(current):
        if cid == company_id:
            return i + 1, float(score)
    return None, None


def _check(
    old_pos: int | None, old_score: float | None, new_pos: int | None, score: float, path: str, reason: str
) -> RescoreCheck:
    before = None if old_pos is None else (old_pos, round(old_score or 0.0, 4))
    after = None if new_pos is None else (new_pos, round(score, 4))
    return RescoreCheck(
        changed=before != after,
        position=new_pos,
        score=None if score < 0 else score,
        path=path,
        reason=reason,
    )


class _Explainer:
    """Per-target facts computed once, then reasons for each returned company."""

    def __init__(
        self, matcher: Matcher, target: Target, query: Mapping[str, float], signals: Mapping[str, FloatArray]
    ) -> None:
        self.m = matcher
        self.target = target
        self.query = query
        self.signals = signals
        text = target_text(target)
        self.domains = set(matcher.target_domains(target, text))
        self.surface = surface_forms(text + " " + " ".join(target.sought_capabilities))
        needs = target.sought_capabilities or [target.title]
        self.needs = [(n, tokenize(n)) for n in needs]
        self._idf: dict[str, float] = {}

    def idf(self, term: str) -> float:
        found = self._idf.get(term)
        if found is None:
            found = self._idf[term] = self.m.idf(term)
        return found

    def suggestion(self, row: int, rank: int, score: float) -> Suggestion:
        m, store = self.m, self.m.store
        domains = sorted(self.domains & m.domain_sets[row])
        contributions = m.terms.row_contributions(row, self.query)
        terms = top_terms(contributions, self.surface)
        matches = capability_matches(self.needs, m.statements[row], self.idf)
        values = {name: round(float(v[row]), 4) for name, v in self.signals.items()}
        name = store.names[row]
        rule = m.rules.get(self.target.programme, m.rules["OTHER"])
        why = (
            f"{self.target.programme}: open to organisations from any country"
            if rule.countries is None
            else f"{self.target.programme}: established in {store.countries[row]}, which is {rule.label}"
        )
        return Suggestion(
            company_id=store.ids[row],
            company_name=name,
            country=store.countries[row],
            rank=rank,
            score=round(min(1.0, max(0.0, score)), 6),
            reasons=Reasons(
                matched_domains=domains,
                capability_matches=matches,
                top_terms=terms,
                signals=values,
                eligibility=why,
                summary=summary_line(name, domains, terms, values),
            ),
        )
