"""The matcher's query weighting of call texts, on top of the shared tokeniser (:mod:`shared.text`)."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from shared.text import stem, strip_html

if TYPE_CHECKING:
    from services.matching.matcher.models import Target

__all__ = ["BOILERPLATE_STEMS", "CALL_BOILERPLATE", "query_weights", "target_text"]

# Words that every funding-call text carries (eligibility tables, budget lines, impact boilerplate).
# They say nothing about *what* is sought, so the matcher down-weights them in a target's query; the
# plain baseline keeps them, which is exactly the difference this list is measured on.
CALL_BOILERPLATE: frozenset[str] = frozenset(
    """activity activities article budget call contribute contribution eligible eligibility euro eur expected
    fund funded funding impact indicative mandatory million number objective objectives optional outcome
    outcomes proposal proposals regulation scope specific table topic type types yes whether following
    list lists must should may addressed address addressing including include includes regard respect
    particular notably aim aims aimed develop development design prototyping prototype testing test
    qualification certification lifecycle efficiency efficiencies upstream downstream tangible intangible
    knowledge generating integrating studies study feasibility defence product products technology
    technologies component components system systems solution solutions new support ensure
    order level related based well possible relevant different various future current capability
    capabilities two three four several country countries member state states european union eu edf
    next year years""".split()
)

BOILERPLATE_STEMS: frozenset[str] = frozenset(stem(w) for w in CALL_BOILERPLATE)


def query_weights(tokens: list[str], boilerplate: frozenset[str] = BOILERPLATE_STEMS) -> dict[str, float]:
    """Query term -> weight for long call texts: sublinear in repetitions, boilerplate damped.

    A 15,000-character topic repeats its subject words dozens of times; 1 + log(tf) keeps them
    important without letting one word drown the rest (plain BM25 counts every repetition).
    """
    counts = Counter(tokens)
    out: dict[str, float] = {}
    for term, tf in counts.items():
        weight = 1.0 + math.log(tf)
        out[term] = weight * (0.2 if term in boilerplate else 1.0)
    return out


def target_text(target: Target) -> str:
    """What the matcher reads of a target: title, summary and description (HTML stripped)."""
    parts = [target.title, target.summary, strip_html(target.description)]
    return "\n".join(p for p in parts if p)
