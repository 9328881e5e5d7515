"""Tokenisation shared by the matcher, the benchmark's plain-BM25 baseline and need coverage.

Deliberately simple and deterministic (no external NLP models): lowercase, strip accents and HTML,
split on anything that is not a letter or digit, drop English stop words, and a light suffix
stemmer so "sensors"/"sensing"/"sensor" and "integration"/"integrated" meet. The baseline uses the
same function, so any gain the matcher shows comes from its signals, not from better tokens; the
consortia service uses it to judge a real roster's coverage exactly as proposals are judged.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

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
    """Lower-case without accents."""
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
