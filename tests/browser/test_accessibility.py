"""axe-core on every page of the portal: no serious or critical violations; keyboard-only use of the two main forms.

axe-core comes from npm (package-lock.json; ``npm ci`` installs it) and is injected by Playwright.
The context bypasses the CSP for this module only, so the injected axe script may run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ROOT, Live
from tests.browser.journeys import company_body, log_in, project_body, unique

pytestmark = pytest.mark.infra

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "bypass_csp": True}


@pytest.fixture(scope="module")
def world(live: Live) -> dict[str, str]:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (.ci/run does)")
    institute = unique("Axe Institute")
    ids: dict[str, str] = {"institute_token": live.new_account("institute", institute)}
    ids["company_id"], ids["company_token"] = live.register_company(company_body(unique("Axe Radar")))
    with live.api("alerts", ids["company_token"]) as c:
        r = c.put(f"/subscriptions/{ids['company_id']}", json={"min_score": 0.0})
        assert r.status_code == 200, r.text
    with live.api("projects", ids["institute_token"]) as c:
        ids["project_id"] = c.post("/projects", json=project_body(institute, unique("Axe project"))).json()["id"]
    with live.api("calls") as c:
        calls = c.get("/calls", params={"limit": 1}).json()["items"]
    ids["call_id"] = calls[0]["id"] if calls else ""
    ids["admin_token"] = live.platform.admin_token
    ids["consortium_id"] = _draft_with_an_invitation(live, ids)
    return ids


def _draft_with_an_invitation(live: Live, ids: dict[str, str]) -> str:
    """A consortium draft of the institute's project with the company invited (once projects.v1 reached it)."""
    deadline = time.monotonic() + 60
    with live.api("consortia", ids["institute_token"]) as c:
        while (
            r := c.post("/consortia", json={"target_type": "project", "target_id": ids["project_id"]})
        ).status_code == 404:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert r.status_code == 201, r.text
        draft = r.json()["id"]
        while (
            r := c.post(f"/consortia/{draft}/invitations", json={"company_id": ids["company_id"]})
        ).status_code == 404:
            assert time.monotonic() < deadline, r.text  # companies.v1 may lag too
            time.sleep(0.5)
        assert r.status_code == 201, r.text
    return str(draft)


def violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


def _check(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 200, f"{path}: {response.status if response else None}"
    found = violations(page)
    summary = [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]} for v in found]
    assert found == [], f"{path}: " + json.dumps(summary, indent=1)


ANONYMOUS = ["/", "/login", "/register", "/calls", "/companies", "/integrators"]


@pytest.mark.parametrize("path", ANONYMOUS)
def test_public_pages(page: Page, world: dict[str, str], path: str) -> None:
    _check(page, path)


def test_call_and_company_pages(page: Page, world: dict[str, str]) -> None:
    _check(page, f"/companies/{world['company_id']}")
    if world["call_id"]:
        _check(page, f"/calls/{world['call_id']}")


def test_company_pages(page: Page, live: Live, world: dict[str, str]) -> None:
    log_in(page, world["company_token"])
    for path in ["/inbox", "/companies/me", "/subscription", "/invitations", "/consortia"]:
        _check(page, path)
    if world["call_id"]:
        _check(page, f"/calls/{world['call_id']}")
    _check(page, f"/inbox/{_first_alert(live, world)}")  # the opportunity page of an alert


def _first_alert(live: Live, world: dict[str, str], timeout_s: float = 90.0) -> str:
    """The id of the company's first alert (the world's project reaches it through matching and alerts)."""
    deadline = time.monotonic() + timeout_s
    with live.api("alerts", world["company_token"]) as c:
        while time.monotonic() < deadline:
            items = c.get(f"/companies/{world['company_id']}/alerts", params={"limit": 1}).json()["items"]
            if items:
                return str(items[0]["id"])
            time.sleep(0.5)
    raise AssertionError(f"no alert for the company within {timeout_s:.0f}s")


def test_institute_pages(page: Page, world: dict[str, str]) -> None:
    log_in(page, world["institute_token"])
    project = f"/projects/{world['project_id']}"
    for path in [
        "/projects",
        "/projects/new",
        project,
        f"{project}/edit",
        "/consortia",
        f"/consortia/{world['consortium_id']}",
    ]:
        _check(page, path)


def test_admin_page(page: Page, world: dict[str, str]) -> None:
    log_in(page, world["admin_token"])
    _check(page, "/admin")


def test_pages_with_errors_shown(page: Page, world: dict[str, str]) -> None:
    page.goto("/register")
    page.get_by_role("button", name="Register").last.click()
    expect(page.locator(".error-summary")).to_be_visible()
    assert violations(page) == []


def _tab_to(page: Page, element_id: str, limit: int = 80) -> None:
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


def test_the_registration_form_works_with_the_keyboard_only(page: Page, world: dict[str, str]) -> None:
    page.goto("/register")
    name = unique("Keyboard Co")
    for field, value in [("f-name", name), ("f-country", "BE"), ("f-city", "Brugge")]:
        _tab_to(page, field)
        page.keyboard.type(value)
    _tab_to(page, "f-size")
    page.keyboard.press("ArrowDown")  # the first size
    _tab_to(page, "f-domains")
    page.keyboard.press("Space")
    _tab_to(page, "f-capabilities-0")
    page.keyboard.type("Keyboard-driven radar calibration")
    _tab_to(page, "f-contact_email")
    page.keyboard.type("keys@keyboard.example")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    assert page.locator("#api-token").input_value().startswith("bgt_")


def test_the_project_form_works_with_the_keyboard_only(page: Page, world: dict[str, str]) -> None:
    log_in(page, world["institute_token"])
    page.goto("/projects/new")
    title = unique("Keyboard project")
    _tab_to(page, "f-title")
    page.keyboard.type(title)
    _tab_to(page, "f-summary")
    page.keyboard.type("A project typed without a mouse.")
    _tab_to(page, "f-domains")
    page.keyboard.press("Space")
    _tab_to(page, "f-sought_capabilities-0")
    page.keyboard.type("Radar detection of small drones")
    _tab_to(page, "f-contact_email")
    page.keyboard.type("keys@lab.example")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
