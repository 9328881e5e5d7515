"""Languages: Dutch and English from message catalogues (Babel), chosen per request.

The source language is English: every text in the templates and views is a gettext message id
(``_("…")``), extracted with ``make messages`` into ``locale/messages.pot`` and translated in
``locale/nl/LC_MESSAGES/messages.po``. The ``.po`` files are compiled in memory when the portal starts
(no committed binaries to go stale); ``tests/unit/portal/test_portal_i18n.py`` fails when a message is
missing from the catalogue, untranslated or fuzzy, or when a template carries text outside ``_()``.

The language is the ``bg_lang`` cookie (set by the switch in the header) or else the best match of
the browser's ``Accept-Language``; English when nothing matches.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LOCALES: tuple[str, ...] = ("en", "nl")
DEFAULT_LOCALE = "en"
LANG_COOKIE = "bg_lang"

_catalogues: dict[str, NullTranslations] = {}
_current: ContextVar[str] = ContextVar("portal_locale", default=DEFAULT_LOCALE)


def load_catalogues(locale_dir: Path = LOCALE_DIR) -> dict[str, NullTranslations]:
    """Compile every ``<lang>/LC_MESSAGES/messages.po`` in memory; English needs none."""
    _catalogues.clear()
    _catalogues["en"] = NullTranslations()
    for lang in LOCALES:
        po = locale_dir / lang / "LC_MESSAGES" / "messages.po"
        if not po.is_file():
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        _catalogues[lang] = Translations(buffer)
    return _catalogues


def _translations() -> NullTranslations:
    if not _catalogues:
        load_catalogues()
    return _catalogues.get(_current.get(), _catalogues["en"])


def set_locale(lang: str) -> None:
    _current.set(lang if lang in LOCALES else DEFAULT_LOCALE)


def current_locale() -> str:
    return _current.get()


def gettext(message: str, **variables: Any) -> str:
    """The message in the request's language, with ``%(name)s`` placeholders filled."""
    text = _translations().gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    text = _translations().ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def N_(message: str) -> str:
    """Mark a message for extraction where it is defined; translate it with ``_()`` where it is shown."""
    return message


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if valid, else the best ``Accept-Language`` match, else English."""
    if cookie in LOCALES:
        return cookie
    preferred: list[tuple[float, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag:
            preferred.append((-quality + position * 1e-6, tag.replace("_", "-")))
    found = Locale.negotiate([tag for _q, tag in sorted(preferred)], list(LOCALES), sep="-")
    return str(found.language) if found is not None and found.language in LOCALES else DEFAULT_LOCALE
