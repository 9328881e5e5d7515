"""Text that goes where only some text fits: one-line headers and log excerpts, plain-ASCII addresses."""

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


ADDRESS_MAX = 254  # RFC 5321's limit on a forward path


class AddressNotUsable(ValueError):
    """An e-mail address that cannot be written into a message as it is; the message says why."""


def ascii_address(address: str) -> str:
    """``address`` as SMTP without extensions takes it: the domain IDNA-encoded, an ASCII local part.

    Raises :class:`AddressNotUsable` for anything else (whitespace or controls, no domain, a
    non-ASCII local part — that needs SMTPUTF8, which Bondgenoot does not use).
    """
    value = address.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or len(value) > ADDRESS_MAX:
        raise AddressNotUsable(f"not an e-mail address: {single_line(value, 80)!r}")
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        raise AddressNotUsable("the address contains white space or control characters")
    if not local.isascii():
        raise AddressNotUsable("the address has a non-ASCII local part (needs SMTPUTF8, not supported)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AddressNotUsable(f"the address's domain cannot be encoded: {exc}") from exc
    return f"{local}@{ascii_domain}"
