"""Text that has to fit on one line: mail headers and the excerpts kept in the attempt log."""

from __future__ import annotations

import unicodedata

# Bidirectional overrides and isolates: harmless on one line, but they can make a subject read as
# something else than it says.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKING = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls (CR, LF, NUL, NEL…), surrogates, U+2028/2029


def single_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters: controls and line separators become spaces,
    runs of white space one space, and a cut is marked with an ellipsis."""
    cleaned = "".join(" " if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _LINE_BREAKING else ch for ch in text)
    flat = " ".join(cleaned.split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)].rstrip() + "…"
