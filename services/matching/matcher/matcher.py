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

import math
from collections import Counter
from collections.abc import Mapping
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

    def remove(self, company_id: str) -> None:
        row = self.rows.get(company_id)
        if row is None:
            return
        self.terms.remove_row(row)
        self.graph.remove_row(row)
        self.store.clear_row(row)
        self.statements[row] = []
        self.domain_sets[row] = set()

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

    def signals(self, target: Target, mask: npt.NDArray[np.bool_]) -> tuple[dict[str, FloatArray], dict[str, float]]:
        """Every signal for every row, each in [0, 1]; plus the query (for explanations)."""
        cfg, store = self.config, self.store
        n = store.n_rows
        text = target_text(target)
        query = self.query(target, text)
        out: dict[str, FloatArray] = {}
        if cfg.weight("text") > 0:
            raw = self.terms.bm25(query, n)
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
            top = float(projects[mask].max()) if mask.any() else 0.0
            out["experience"] = np.log1p(projects) / np.log1p(top) if top > 0 else np.zeros(n)
        if cfg.weight("coordinator") > 0:
            out["coordinator"] = np.minimum(1.0, store.coordinated[:n] / 2.0)
        if cfg.weight("dense") > 0 and self.encoder is not None:
            vector = embed_document(self.encoder, text)
            cosine = self.vectors[:n] @ vector
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
        n = self.store.n_rows
        mask = self.store.mask(target.programme)
        signals, query = self.signals(target, mask)
        stage1 = self._fuse(signals, n)
        if self.config.weight("network") > 0 and self.config.seeds > 0 and mask.any():
            eligible = np.flatnonzero(mask)
            k = min(self.config.seeds, eligible.size)
            seeds = eligible[np.argpartition(-stage1[eligible], k - 1)[:k]]
            spread = self.graph.spread(seeds.astype(np.int64), stage1[seeds], n)
            spread[seeds] = np.maximum(spread[seeds], 0.0)
            top = float(spread[mask].max()) if mask.any() else 0.0
            signals["network"] = spread / top if top > 0 else np.zeros(n)
        final = np.clip(self._fuse(signals, n), 0.0, 1.0)
        final[~mask] = -1.0
        return final, mask, signals, query

    def rank(self, target: Target, top_n: int = 20) -> list[Suggestion]:
        """The ``top_n`` best eligible companies for the target, best first, with reasons."""
        if self.store.n_rows == 0 or top_n <= 0:
            return []
        final, mask, signals, query = self.scores(target)
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
