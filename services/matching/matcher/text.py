"""Tokenisation shared by the matcher and the benchmark's plain-BM25 baseline.

Deliberately simple and deterministic (no external NLP models): lowercase, strip accents and HTML,
split on anything that is not a letter or digit, drop English stop words, and a light suffix
stemmer so "sensors"/"sensing"/"sensor" and "integration"/"integrated" meet. The baseline uses the
same function, so any gain the matcher shows comes from its signals, not from better tokens.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.matching.matcher.models import Target

_TAG = re.compile(r"<[^>]+>")
_TOKEN = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")

STOPWORDS: frozenset[str] = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each either etc few for from further
    had has have having he her here hers herself him himself his how however i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out over own
    per same she should so some such than that the their theirs them themselves then there these they this
    those through thus to too under until up upon us very via was we were what when where whether which while
    who whom whose why will with within without would yet you your yours e g ie i.e eg""".split()
)

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

_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        """ational ations ation ating ated ates ate ings ing ities ity ments ment ness ives ive ions ion
        ers er ors or ed ies es s al ly""".split(),
        key=len,
        reverse=True,
    )
)
_MIN_STEM = 4


def strip_html(text: str) -> str:
    """Portal descriptions are HTML; tags become spaces so words on both sides do not fuse."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def fold(text: str) -> str:
    """Lower case without accents (also used to compare organisation names)."""
    # NFKD + drop combining marks: "Défense" and "Defense" are the same word to a matcher.
    if text.isascii():  # the common case; NFKD over long call texts is the slow part
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Strip the longest known suffix when at least four letters remain, then a final 'e'."""
    if len(word) <= _MIN_STEM or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > _MIN_STEM:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Stemmed content tokens, in order (duplicates kept: term frequency matters)."""
    return [stem(w) for w in _TOKEN.findall(fold(text)) if len(w) > 1 and w not in STOPWORDS and not w.isdigit()]


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
