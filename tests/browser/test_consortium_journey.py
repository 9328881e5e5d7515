"""The consortium journey of issue 12 in a real browser, against the six real services on Kafka and PostgreSQL.

The lead (an institute) opens a draft from its project page, sees the rules fail and the gaps with
registered organisations that would fill them, and invites two of them with one click each. One
invitee declines with a reason, the other accepts, and the lead's page shows every rule holding.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Live
from tests.browser.journeys import company_body, log_in, project_body, unique

pytestmark = pytest.mark.infra

# A need only this test's companies cover, so they are the gap's candidates whoever else registered.
NEED = "Quantum gravimetry for tunnel detection"
EVENTUAL_S = 60  # projects.v1 → the consortia service's read model, on a busy machine


def open_draft(page: Page, project_id: str) -> str:
    """Click "Build a consortium" until the consortia service has read the project (404 before)."""
    deadline = time.monotonic() + EVENTUAL_S
    while True:
        page.goto(f"/projects/{project_id}")
        page.get_by_role("button", name="Build a consortium").click()
        page.wait_for_load_state()
        if re.search(r"/consortia/[0-9a-f-]{36}$", page.url):
            return page.url
        assert time.monotonic() < deadline, f"the draft did not open: {page.url}"
        time.sleep(1)


def test_a_lead_invites_from_the_gaps_one_declines_one_accepts_and_the_rules_turn_green(page: Page, live: Live) -> None:
    institute = unique("Consortium Institute")
    lead_token = live.new_account("institute", institute)
    radar, busy = unique("Gravity Works"), unique("Busy Beams")
    _, radar_token = live.register_company(company_body(radar, capabilities=[NEED]))
    _, busy_token = live.register_company(company_body(busy, capabilities=[f"{NEED} under water"]))
    with live.api("projects", lead_token) as c:
        body = {**project_body(institute, unique("Tunnel gravimetry")), "sought_capabilities": [NEED]}
        project_id = c.post("/projects", json=body).json()["id"]

    log_in(page, lead_token)
    draft_url = open_draft(page, project_id)
    expect(page.locator("#rules-verdict")).to_contain_text("Not every rule holds yet.")
    expect(page.locator("[data-rule=min_entities]")).to_contain_text("Minimum number of organisations")
    for company in (radar, busy):
        deadline = time.monotonic() + EVENTUAL_S
        while page.get_by_role("button", name=f"Invite {company}").count() == 0:  # companies.v1 may lag
            assert time.monotonic() < deadline, f"{company} never appeared among the gap candidates"
            time.sleep(1)
            page.reload()
        page.get_by_role("button", name=f"Invite {company}").click()
        expect(page.get_by_role("status")).to_contain_text("The invitation is sent.")
    expect(page.locator(".invitation-status")).to_have_text(["Waiting for an answer"] * 2)

    log_in(page, busy_token)
    page.goto("/invitations")
    expect(page.get_by_text(f"From {institute}")).to_be_visible()
    page.get_by_label("Reason (optional)").select_option("no_capacity")
    page.get_by_role("button", name="Decline").click()
    expect(page.get_by_role("status")).to_contain_text("You declined the invitation.")
    assert page.goto(draft_url).status == 403  # a declined invitee sees nothing further

    log_in(page, radar_token)
    page.goto("/invitations")
    page.get_by_role("button", name="Accept").click()
    expect(page).to_have_url(re.compile(r"/consortia/[0-9a-f-]{36}\?note=joined$"))
    expect(page.locator("#rules-verdict")).to_contain_text("Every rule holds.")

    log_in(page, lead_token)
    page.goto(draft_url)
    expect(page.locator("#rules-verdict")).to_contain_text("Every rule holds.")
    expect(page.locator(".invitation-status")).to_have_text(["Accepted", "Declined"])  # in the order invited
    expect(page.get_by_text("No capacity")).to_be_visible()
    page.goto(f"/projects/{project_id}")
    expect(page.locator("#funnel div", has_text="Invited").locator("dd")).to_have_text("2")
    expect(page.locator("#funnel div", has_text="Accepted").locator("dd")).to_have_text("1")
    page.goto(draft_url)
    page.get_by_role("button", name="Nederlands").click()
    expect(page.locator("#rules-verdict")).to_contain_text("Aan elke regel is voldaan.")
