"""The journeys of issue 11 in a real browser, against the five real services on Kafka and PostgreSQL.

1. An institute posts a project with one invalid field first, sees the error next to it, fixes it,
   and sees ranked suggestions with reasons and a consortium proposal appear.
2. A company registers, sets its subscription, keeps /inbox open and sees the alert arrive live.
3. A company registers while the institute's project page is open and appears in its suggestions live.
4. The language switch.
5. XSS and CSRF attempts fail.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Live
from tests.browser.journeys import (
    DRONE_CAPABILITIES,
    NEEDS,
    PROJECT_SUMMARY,
    company_body,
    log_in,
    mark_document,
    not_reloaded,
    project_body,
    readme_screenshot,
    unique,
)

pytestmark = pytest.mark.infra

LIVE_TIMEOUT_MS = 60_000  # Kafka → matching → projects/alerts → portal stream → browser, on a busy machine


@pytest.fixture(scope="module")
def institute(live: Live) -> tuple[str, str]:
    name = unique("Flemish Institute for Sensing")
    return name, live.new_account("institute", name)


@pytest.fixture(scope="module")
def fitting_companies(live: Live) -> list[str]:
    """Three companies that fit a counter-drone project (two countries: consortium rules can pass)."""
    names = [unique("Radar Works"), unique("Fusion Labs"), unique("Sky Guard")]
    for name, country in zip(names, ("BE", "BE", "NL"), strict=True):
        live.register_company(company_body(name, country=country))
    return names


def test_1_institute_posts_a_project_fixes_an_error_and_sees_suggestions_and_a_proposal(
    page: Page, live: Live, institute: tuple[str, str], fitting_companies: list[str]
) -> None:
    log_in(page, institute[1])
    page.goto("/projects/new")
    page.get_by_label("Title").fill("Counter-drone detection with AI sensor fusion")
    page.get_by_label("Summary").fill(PROJECT_SUMMARY)
    page.get_by_label("Aviation & counter-UAS").check()
    page.get_by_label("Artificial intelligence").check()
    page.locator("#f-sought_capabilities-0").fill(NEEDS[0])
    page.get_by_role("button", name="Add another").click()
    expect(page.locator("#f-sought_capabilities-1")).to_be_focused()
    page.keyboard.type(NEEDS[1])
    page.get_by_label("Partners wanted").fill("99")  # the API allows at most 50
    page.get_by_label("Contact e-mail address").fill("lab@institute.example")
    page.get_by_role("button", name="Post the project").click()

    error = page.locator("#f-partners_wanted-error")
    expect(error).to_contain_text("at most 50")
    expect(page.locator(".error-summary a[href='#f-partners_wanted']")).to_be_visible()
    expect(page.get_by_label("Title")).to_have_value("Counter-drone detection with AI sensor fusion")
    expect(page.locator("#f-sought_capabilities-1")).to_have_value(NEEDS[1])

    page.get_by_label("Partners wanted").fill("3")
    page.get_by_role("button", name="Post the project").click()
    expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}$"))
    expect(page.locator("#suggestions .suggestion").first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    first = page.locator("#suggestions .suggestion").first
    first.locator("summary").click()
    expect(first.locator(".reasons")).to_contain_text("Matched domains")
    expect(first.locator(".pairs")).to_be_visible()  # capability ↔ need pairs
    expect(page.locator("#consortia .proposal").first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#consortia table.coverage").first).to_be_visible()
    expect(page.locator("#consortia .rules li").first).to_be_visible()


def test_2_a_company_registers_subscribes_and_sees_the_alert_arrive_live(
    page: Page, live: Live, institute: tuple[str, str]
) -> None:
    name = unique("Drone Sentinel")
    page.goto("/register")
    page.get_by_label("Organisation name").fill(name)
    page.get_by_label("Country").fill("BE")
    page.get_by_label("City").fill("Gent")
    page.get_by_label("Size").select_option("small")
    page.get_by_label("Aviation & counter-UAS").check()
    page.get_by_label("Artificial intelligence").check()
    page.locator("#f-capabilities-0").fill(DRONE_CAPABILITIES[0])
    page.get_by_label("Keywords").fill("radar, drone")
    page.get_by_label("Contact e-mail address").fill("hello@sentinel.example")
    page.get_by_role("button", name="Register").last.click()
    token = page.locator("#api-token").input_value()
    assert token.startswith("bgt_")

    page.goto("/subscription")
    page.get_by_label("Aviation & counter-UAS").check()
    page.get_by_label("Minimum score").fill("0")
    page.get_by_role("button", name="Save subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")

    page.goto("/inbox")  # may already hold alerts for earlier journeys' projects: this one's title is new
    page.wait_for_function("document.querySelector('[sse-connect]') && htmx !== undefined")
    page.wait_for_timeout(500)  # the EventSource is open before the project is posted
    mark_document(page)
    title = unique("Drone detection for ports")
    with live.api("projects", institute[1]) as c:
        r = c.post("/projects", json=project_body(institute[0], title))
    assert r.status_code == 201, r.text

    expect(page.locator("#alerts .alert-item", has_text=title)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert not_reloaded(page), "the alert must arrive without a reload"
    readme_screenshot(page, "portal-inbox")
    page.locator("#alerts .alert-item a", has_text=title).click()
    expect(page.get_by_role("heading", name="Why it fits you")).to_be_visible()


def test_3_a_new_company_appears_in_the_open_project_page_live(
    page: Page, live: Live, institute: tuple[str, str], fitting_companies: list[str]
) -> None:
    title = unique("Counter-UAS sensing")
    with live.api("projects", institute[1]) as c:
        r = c.post("/projects", json={**project_body(institute[0], title), "partners_wanted": 8})
    project_id = r.json()["id"]
    log_in(page, institute[1])
    page.goto(f"/projects/{project_id}")
    expect(page.locator("#suggestions .suggestion").first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    page.wait_for_timeout(500)
    mark_document(page)
    newcomer = unique("Newcomer Radar Systems")
    live.register_company(company_body(newcomer, capabilities=[*DRONE_CAPABILITIES, NEEDS[0], NEEDS[1]]))
    expect(page.locator("#suggestions")).to_contain_text(newcomer, timeout=LIVE_TIMEOUT_MS)
    assert not_reloaded(page), "the suggestion must arrive without a reload"
    page.locator("#suggestions .suggestion", has_text=newcomer).locator("summary").click()
    readme_screenshot(page, "portal-project", top="#suggestions-heading")


def test_4_the_language_switch(page: Page, live: Live) -> None:
    page.goto("/calls")
    expect(page.get_by_role("heading", level=1)).to_have_text("Funding calls")
    page.get_by_role("button", name="Nederlands").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Financieringsoproepen")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    page.goto("/companies")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bedrijvengids")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Company directory")


class _Attacker(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}/subscription">'
            '<input name="min_score" value="0.99"><input name="keywords" value="pwned"></form>'
            '<button id="go" form="f">go</button>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def attacker(live: Live) -> Iterator[str]:
    """Another site (localhost, not 127.0.0.1) serving a form that posts to the portal."""
    _Attacker.target = live.url
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_5_xss_and_csrf_attempts_fail(page: Page, live: Live, attacker: str) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    company_id, token = live.register_company(company_body(evil[:60], capabilities=[evil + " radar"]))
    page.goto(f"/companies/{company_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(evil[:60])
    page.goto(f"/companies?q={company_id[:0]}script")
    page.wait_for_timeout(300)
    assert dialogs == [], "user text ran as script"

    log_in(page, token)
    page.goto("/subscription")
    page.get_by_label("Minimum score").fill("0.5")
    page.get_by_role("button", name="Save subscription").click()
    forged = page.request.post(f"{live.url}/subscription", form={"min_score": "0.99", "csrf_token": "0" * 64})
    assert forged.status == 403
    page.goto(attacker)
    with page.expect_response(lambda r: r.url.endswith("/subscription")) as answer:
        page.click("#go")
    assert answer.value.status == 403
    with live.api("alerts", token) as c:
        assert c.get(f"/subscriptions/{company_id}").json()["min_score"] == 0.5


def test_tokens_are_never_logged(live: Live, institute: tuple[str, str]) -> None:
    """After the journeys: no log of the portal or of any service holds a token that was used."""
    for process in live.platform.services.values():
        text = process.log_path.read_text(errors="replace") if process.log_path.exists() else ""
        assert institute[1] not in text, f"{process.name} logged a token"
        assert "bgt_" not in text, f"{process.name} logged something that looks like a token"
