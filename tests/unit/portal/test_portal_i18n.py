"""Dutch and English: every text comes from the catalogue, the catalogue is complete and current."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from jinja2 import Environment
from jinja2.lexer import TOKEN_DATA

from services.portal import i18n
from services.portal.labels import DOMAIN_LABELS
from shared.taxonomy import load_taxonomy
from tests.unit.portal.conftest import csrf_of

ROOT = Path(__file__).resolve().parents[3]
PORTAL = ROOT / "services" / "portal"
NL_PO = PORTAL / "locale" / "nl" / "LC_MESSAGES" / "messages.po"
TEXT_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label"}


def _catalogue_ids(path: Path) -> set[object]:
    with path.open("rb") as fh:
        return {m.id for m in read_po(fh) if m.id}


def test_the_dutch_catalogue_is_current_complete_and_not_fuzzy(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(PORTAL / "babel.cfg"),
            "-k",
            "N_",
            "-k",
            "_",
            "--no-location",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    used = _catalogue_ids(pot)
    translated = _catalogue_ids(NL_PO)
    assert used - translated == set(), "run `make messages` and translate the new messages in nl/messages.po"
    with NL_PO.open("rb") as fh:
        catalogue = read_po(fh)
    problems = [
        m.id for m in catalogue if m.id and (m.fuzzy or not (m.string if isinstance(m.string, str) else all(m.string)))
    ]
    assert problems == []


def test_every_taxonomy_domain_has_a_translated_label() -> None:
    assert {d.slug for d in load_taxonomy().domains} <= set(DOMAIN_LABELS)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_data(self, data: str) -> None:
        if any(ch.isalpha() for ch in data):
            self.found.append(data.strip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [v for k, v in attrs if k in TEXT_ATTRIBUTES and v and any(c.isalpha() for c in v)]


def test_templates_carry_no_text_outside_the_catalogue() -> None:
    env = Environment(extensions=["jinja2.ext.i18n"])
    offenders = []
    for template in sorted((PORTAL / "templates").rglob("*.html")):
        source = template.read_text()
        parser = _Text()
        for _lineno, kind, value in env.lex(source):
            if kind == TOKEN_DATA:
                parser.feed(value)
        offenders += [f"{template.name}: {text!r}" for text in parser.found]
    assert offenders == []


def test_the_language_follows_accept_language_then_the_switch(client: TestClient) -> None:
    assert 'lang="nl"' in client.get("/login", headers={"Accept-Language": "nl-BE,nl;q=0.9,en;q=0.5"}).text
    page = client.get("/login", headers={"Accept-Language": "fr-BE"})
    assert '<html lang="en">' in page.text
    r = client.post("/lang", data={"lang": "nl", "next": "/calls", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/calls"
    dutch = client.get("/calls", headers={"Accept-Language": "en"}).text
    assert "Financieringsoproepen" in dutch and '<html lang="nl">' in dutch
    i18n.set_locale("en")
