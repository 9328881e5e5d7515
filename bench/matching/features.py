"""Per-candidate features for the experiments (``experiments.py``), from earlier call years only.

For an evaluated call year Y every feature of a candidate is computed from its profile under the
temporal protocol — projects of topics of years before Y — and from the call itself (topic id,
title, description). Nothing reads the evaluated project's consortium except the labels
(``CaseFeatures.truth`` / ``coordinators``), which the rankings never see.

Features (one float per candidate):

matcher, text, category, network   the Matcher's final score and its scaled signals (same run)
bm25                               plain BM25 score (rank-bm25, the baseline's own index)
lsa                                cosine of LSA vectors (truncated SVD, 100 dimensions, of the
                                   candidates' tf-idf profile text, fitted on the history only):
                                   a dense text model that needs no downloaded weights
projects, coordinated              earlier projects / earlier coordinations
coordinated_category               coordinated an earlier project of the call's EDF category
same_code                          took part in an earlier topic with the same topic code
                                   (the id's last part; "…-SME-NT" / "…-DIS-NT" keep two)
predecessor                        took part in a topic the call text names (EDF-20xx-… ids)
predecessor_lead                   coordinated such a topic
kind                               took part in an earlier topic of the same kind (SME, SMERO, DIS,
                                   challenge, other)
org_prior                          organisation type fits the kind (SME / research for the small
                                   lump-sum kinds, large / research otherwise)
previous_year                      took part in a project of year Y - 1
group_text                         the best text signal among the brand group's members
group_category, group_coordinated  the brand group's (name proxy, ``data.brand_of``) projects in the
                                   call's category (saturating at 3) / coordinations (log)
large, research                    large company / research organisation
network_lead                       joint past projects with the 10 best candidates of lead_prior
lead_prior                         a hand-written coordinator prior: matcher x type fit x
                                   (1 + group coordinations (log) + coordinated a named predecessor)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from rank_bm25 import BM25Okapi
from scipy.sparse import csr_matrix

from bench.matching.data import named_topics, subject, topic_code, topic_kind, year_of
from bench.matching.run import Harness
from services.matching.matcher import CompanyProfile, MatcherConfig, Target
from services.matching.matcher.features import profile_text
from services.matching.matcher.text import target_text
from shared.consortium_rules import COORDINATOR_ROLES
from shared.text import tokenize

FloatArray = npt.NDArray[np.float64]
LSA_DIMENSIONS = 100


@dataclass
class CaseFeatures:
    """One evaluated project: its candidates, labels and feature columns (same order)."""

    topic_id: str
    candidates: list[str]
    truth: frozenset[str]
    coordinators: frozenset[str]
    described: bool
    thematic: bool  # the call names a subject (not a …-NT or challenge topic), see data.subject
    weight_total: float
    columns: dict[str, FloatArray] = field(default_factory=dict)

    def column(self, name: str) -> FloatArray:
        return self.columns[name]


@dataclass
class YearFeatures:
    prefix: str
    cases: list[CaseFeatures]


def _is_lead(role: str | None) -> bool:
    return (role or "").lower() in COORDINATOR_ROLES


def _lsa(
    profiles: Mapping[str, CompanyProfile], candidates: list[str]
) -> tuple[dict[str, int], FloatArray, FloatArray]:
    """(vocabulary, idf, term -> concept projection), fitted on the candidates' profile text."""
    docs = [tokenize(profile_text(profiles[c])) for c in candidates]
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        counts: dict[int, int] = {}
        for token in doc:
            tid = vocab.setdefault(token, len(vocab))
            counts[tid] = counts.get(tid, 0) + 1
        for t, c in counts.items():
            rows.append(i)
            cols.append(t)
            vals.append(1.0 + math.log(c))
    matrix = csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)))
    df = np.bincount(np.asarray(cols), minlength=len(vocab))
    idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
    weighted = csr_matrix(matrix.multiply(idf[None, :]))
    # Truncated SVD through the documents' Gram matrix (documents x documents, a few hundred): an
    # exact, deterministic eigen-decomposition; components with no weight (duplicate profiles) dropped.
    values, vectors = np.linalg.eigh((weighted @ weighted.T).toarray())
    keep = np.argsort(-values)[:LSA_DIMENSIONS]
    keep = keep[values[keep] > 1e-9 * max(float(values.max()), 1e-300)]
    singular = np.sqrt(values[keep])
    return vocab, idf, np.asarray(weighted.T @ vectors[:, keep], dtype=np.float64) / singular


def _embed(tokens: list[str], vocab: Mapping[str, int], idf: FloatArray, projection: FloatArray) -> FloatArray:
    vector = np.zeros(len(vocab))
    for token in tokens:
        if token in vocab:
            vector[vocab[token]] += 1.0
    nz = vector > 0
    vector[nz] = (1.0 + np.log(vector[nz])) * idf[nz]
    out = vector @ projection
    norm = np.linalg.norm(out)
    return np.asarray(out / norm if norm else out, dtype=np.float64)


def year_features(harness: Harness, prefix: str, config: MatcherConfig) -> YearFeatures:
    """The feature table of every evaluated project of ``prefix`` (temporal protocol)."""
    year = year_of(prefix)
    assert year is not None
    matcher = harness.build(config, prefix)
    profiles = harness.history(prefix)
    weight_total = sum(config.weight(s) for s in ("text", "domain", "category", "experience", "coordinator", "network"))
    cases: list[CaseFeatures] = []
    candidates: list[str] = []
    bm25: BM25Okapi | None = None
    vocab: dict[str, int] = {}
    idf = projection = docvecs = np.zeros(0)
    static: dict[str, FloatArray] = {}
    for case in harness.cases(prefix, {"matcher": matcher}):
        if not case.candidates:
            continue  # nothing known before this year: nothing to rank
        if bm25 is None:
            candidates = case.candidates
            bm25 = BM25Okapi([tokenize(profile_text(profiles[c])) for c in candidates])
            vocab, idf, projection = _lsa(profiles, candidates)
            docvecs = np.vstack(
                [_embed(tokenize(profile_text(profiles[c])), vocab, idf, projection) for c in candidates]
            )
            static = _static(profiles, candidates, year)
        assert case.candidates == candidates, "the temporal protocol keeps one candidate set per year"
        final, _, signals, _ = matcher.scores(case.target)
        rows = np.array([matcher.rows[c] for c in candidates])
        columns: dict[str, FloatArray] = {"matcher": final[rows]}
        for signal in ("text", "category", "network"):
            values = signals.get(signal)
            columns[signal] = np.asarray(values[rows], dtype=np.float64) if values is not None else np.zeros(len(rows))
        query = tokenize(target_text(case.target))
        columns["bm25"] = np.asarray(bm25.get_scores(query), dtype=np.float64)
        columns["lsa"] = np.maximum(0.0, docvecs @ _embed(query, vocab, idf, projection))
        columns.update(static)
        columns.update(_topical(case.target, profiles, candidates, harness, columns))
        # Co-participation with the predicted coordinators: the network signal's formula, seeded
        # by the coordinator prior's 10 best instead of the first stage's.
        lead = columns["lead_prior"]
        seeds = np.argsort(-lead, kind="stable")[: config.seeds]
        spread = matcher.graph.spread(rows[seeds].astype(np.int64), lead[seeds], matcher.store.n_rows)[rows]
        columns["network_lead"] = np.asarray(spread, dtype=np.float64)
        cases.append(
            CaseFeatures(
                topic_id=case.project.topic_id,
                candidates=candidates,
                truth=case.truth,
                coordinators=case.project.coordinators,
                described=case.described,
                thematic=subject(case.project.topic_id) == "thematic",
                weight_total=weight_total,
                columns=columns,
            )
        )
    return YearFeatures(prefix=prefix, cases=cases)


def _static(profiles: Mapping[str, CompanyProfile], candidates: list[str], year: int) -> dict[str, FloatArray]:
    """Features that do not depend on the call: track record, type, last year's activity."""
    out: dict[str, list[float]] = {n: [] for n in ("projects", "coordinated", "previous_year", "large", "research")}
    for c in candidates:
        p = profiles[c]
        out["projects"].append(float(len(p.history)))
        out["coordinated"].append(float(sum(1 for h in p.history if _is_lead(h.role))))
        out["previous_year"].append(1.0 if any(h.year == year - 1 for h in p.history) else 0.0)
        out["large"].append(1.0 if p.organisation_type == "company" and not p.is_sme else 0.0)
        out["research"].append(1.0 if p.organisation_type == "research" else 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _topical(
    target: Target,
    profiles: Mapping[str, CompanyProfile],
    candidates: list[str],
    harness: Harness,
    columns: Mapping[str, FloatArray],
) -> dict[str, FloatArray]:
    """Features that depend on the call: topic code, named predecessors, kind, category, group record."""
    taxonomy = harness.taxonomy
    category = taxonomy.category_of(target.id)
    code, kind = topic_code(target.id), topic_kind(target.id)
    named = named_topics(target.description)
    small_kind = kind != "OTHER"
    names = ("same_code", "predecessor", "predecessor_lead", "kind", "org_prior", "coordinated_category")
    out: dict[str, list[float]] = {n: [] for n in names}
    group_cat: dict[str, float] = {}
    group_lead: dict[str, float] = {}
    for c in candidates:
        p = profiles[c]
        group = p.parent_group or c
        in_cat = sum(1 for h in p.history if category and taxonomy.category_of(h.topic_id) == category)
        group_cat[group] = group_cat.get(group, 0.0) + in_cat
        group_lead[group] = group_lead.get(group, 0.0) + sum(1 for h in p.history if _is_lead(h.role))
        topics = [h.topic_id or "" for h in p.history]
        out["same_code"].append(1.0 if any(topic_code(t) == code for t in topics) else 0.0)
        out["predecessor"].append(1.0 if named.intersection(topics) else 0.0)
        lead_named = any(h.topic_id in named and _is_lead(h.role) for h in p.history)
        out["predecessor_lead"].append(1.0 if lead_named else 0.0)
        out["kind"].append(1.0 if any(topic_kind(t) == kind for t in topics) else 0.0)
        fits = (p.is_sme or p.organisation_type == "research") if small_kind else not p.is_sme
        out["org_prior"].append(1.0 if fits else 0.0)
        lead_cat = any(
            _is_lead(h.role) and category and taxonomy.category_of(h.topic_id) == category for h in p.history
        )
        out["coordinated_category"].append(1.0 if lead_cat else 0.0)
    result = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    groups = [profiles[c].parent_group or c for c in candidates]
    result["group_category"] = np.minimum(1.0, np.log1p([group_cat[g] for g in groups]) / math.log1p(3.0))
    result["group_coordinated"] = np.log1p([group_lead[g] for g in groups])
    text = columns["text"]
    best_text: dict[str, float] = {}
    for g, t in zip(groups, text.tolist(), strict=True):
        best_text[g] = max(best_text.get(g, 0.0), t)
    result["group_text"] = np.asarray([best_text[g] for g in groups], dtype=np.float64)
    result["lead_prior"] = (
        columns["matcher"]
        * (0.5 + 0.5 * result["org_prior"])
        * (1.0 + result["group_coordinated"] + result["predecessor_lead"])
    )
    return result
