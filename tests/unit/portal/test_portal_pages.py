"""Every page renders for the roles it is for; forms send the API's field names and show its verdict."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.portal.conftest import csrf_of, login
from tests.unit.portal.fakes import ADMIN_TOKEN, COMPANY_ID, COMPANY_TOKEN, INSTITUTE_TOKEN, FakeServices

PUBLIC = [
    "/",
    "/login",
    "/register",
    "/calls",
    "/calls/EDF-2026-DA-TEST",
    "/companies",
    f"/companies/{COMPANY_ID}",
    "/integrators",
]


@pytest.mark.parametrize("path", PUBLIC)
def test_public_pages_render_without_an_account(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert '<main id="main"' in r.text


@pytest.mark.parametrize("path", ["/inbox", "/companies/me", "/subscription", "/projects/new", "/admin"])
def test_private_pages_send_the_anonymous_to_login_and_back(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 303 and r.headers["location"] == f"/login?next={path.replace('/', '%2F')}"


def test_company_pages(client: TestClient, fake: FakeServices) -> None:
    alert = fake.alert()
    login(client, COMPANY_TOKEN)
    for path in ["/inbox", f"/inbox/{alert['id']}", "/companies/me", "/subscription", "/calls/EDF-2026-DA-TEST"]:
        assert client.get(path).status_code == 200, path
    assert "How well do we fit?" in client.get("/calls/EDF-2026-DA-TEST").text
    assert client.get("/admin").status_code == 403
    assert client.get("/projects/new").status_code == 403


def test_admin_and_institute_pages(client: TestClient, fake: FakeServices) -> None:
    login(client, ADMIN_TOKEN)
    admin = client.get("/admin")
    assert admin.status_code == 200 and "Dead letters" in admin.text
    login(client, INSTITUTE_TOKEN)
    assert client.get("/projects").status_code == 200
    assert client.get("/admin").status_code == 403


def test_a_refused_project_shows_the_message_next_to_the_field_and_keeps_the_input(
    client: TestClient, fake: FakeServices
) -> None:
    login(client, INSTITUTE_TOKEN)
    form = client.get("/projects/new").text
    data = {
        "csrf_token": csrf_of(form),
        "title": "Drone <b>detection</b>",
        "summary": "Find drones",
        "programme": "FSDB",
        "domains": ["cybersecurity", "space"],
        "sought_capabilities": ["Radar", "EO/IR tracking"],
        "partners_wanted": "99",
        "contact_email": "lab@example.org",
    }
    r = client.post("/projects/new", data=data)
    assert r.status_code == 422
    assert 'id="f-partners_wanted-error"' in r.text and "at most 50" in r.text
    assert 'href="#f-partners_wanted"' in r.text  # the summary links to the field
    assert 'value="Drone &lt;b&gt;detection&lt;/b&gt;"' in r.text and 'value="EO/IR tracking"' in r.text
    assert fake.projects == {}
    sent = [req for req in fake.seen if req.url.path == "/projects" and req.method == "POST"][-1]
    assert sent.read().decode().count('"institute":"Flemish Institute"') == 1  # the account's own name

    data["partners_wanted"] = "4"
    r = client.post("/projects/new", data=data)
    assert r.status_code == 303
    project_id = r.headers["location"].rsplit("/", 1)[-1]
    page = client.get(f"/projects/{project_id}").text
    assert "Suggested partners" in page and "Strong radar fit" in page and "Proposal 1" in page
    assert 'sse-connect="/projects/' in page


def test_add_another_shows_one_more_row_and_sends_nothing(client: TestClient, fake: FakeServices) -> None:
    form = client.get("/register").text
    r = client.post("/register", data={"csrf_token": csrf_of(form), "capabilities": ["One"], "_add": "capabilities"})
    assert r.status_code == 200
    assert r.text.count('name="capabilities"') == 2 and "autofocus" in r.text
    assert not any(req.method == "POST" for req in fake.seen)


def test_registration_shows_the_token_once_and_logs_in(client: TestClient) -> None:
    form = client.get("/register").text
    body = {
        "csrf_token": csrf_of(form),
        "name": "New Co",
        "country": "BE",
        "city": "Gent",
        "size": "small",
        "organisation_type": "company",
        "domains": "space",
        "capabilities": ["Satellite imagery"],
        "contact_email": "x@new.example",
    }
    r = client.post("/register", data=body)
    assert r.status_code == 200 and "bgt_newly_issued_token" in r.text
    assert client.get("/inbox").status_code == 200


def test_subscription_and_webhook_secret_once(client: TestClient, fake: FakeServices) -> None:
    login(client, COMPANY_TOKEN)
    form = client.get("/subscription").text
    r = client.post(
        "/subscription",
        data={"csrf_token": csrf_of(form), "domains": "space", "min_score": "0.2", "keywords": "radar, drone"},
    )
    assert r.status_code == 303
    assert fake.subscription is not None and fake.subscription["keywords"] == ["radar", "drone"]
    form = client.get("/subscription").text
    r = client.post("/subscription/webhook", data={"csrf_token": csrf_of(form), "url": "https://hooks.example/x"})
    assert "whsec_shown_once" in r.text
    assert "whsec_shown_once" not in client.get("/subscription").text
    r = client.post("/subscription/webhook/test", data={"csrf_token": csrf_of(form)})
    assert "HTTP 204" in r.text


def test_a_lead_opens_a_draft_sees_rules_and_gaps_and_invites_in_one_click(
    client: TestClient, fake: FakeServices
) -> None:
    login(client, INSTITUTE_TOKEN)
    form = client.get("/consortia").text
    r = client.post("/consortia/open", data={"csrf_token": csrf_of(form), "target_type": "project", "target_id": "p1"})
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "Not every rule holds yet." in page and "Minimum number of organisations" in page
    assert "1 entities; FSDB requires at least 2" in page and "Invite Acme" in page
    draft_id = next(iter(fake.drafts))
    invite = {"csrf_token": csrf_of(page), "company_id": COMPANY_ID, "message": "Join <us>"}
    r = client.post(f"/consortia/{draft_id}/invite", data=invite)
    assert r.status_code == 303 and r.headers["location"].endswith("note=invited")
    assert fake.drafts[draft_id]["invitations"][0]["message"] == "Join <us>"
    assert "The invitation is sent." in client.get(r.headers["location"]).text
    again = client.post(f"/consortia/{draft_id}/invite", data=invite)
    assert again.status_code == 409 and "already invited or a member" in again.text  # said on the page


def test_an_invitee_sees_its_invitations_and_declines_with_a_reason(client: TestClient, fake: FakeServices) -> None:
    draft = fake.draft("project", "p1", lead={"institute": "Flemish Institute", "name": "x"})
    fake.consortia(
        "POST",
        f"/consortia/{draft['id']}/invitations",
        {"role": "institute"},
        {"company_id": COMPANY_ID, "message": "Join us"},
    )
    login(client, COMPANY_TOKEN)
    page = client.get("/invitations").text
    assert "Join us" in page and "From Flemish Institute" in page and "Waiting for an answer" in page
    invitation = fake.invitations()[0]
    r = client.post(
        f"/invitations/{invitation['id']}/decline", data={"csrf_token": csrf_of(page), "reason": "no_capacity"}
    )
    assert r.status_code == 303 and invitation["status"] == "declined" and invitation["reason"] == "no_capacity"
    assert "You declined the invitation." in client.get(r.headers["location"]).text
    assert client.get("/projects/new").status_code == 403


@pytest.mark.parametrize("path", ["/consortia", "/invitations"])
def test_consortium_pages_need_an_account(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 303


def test_a_lead_invites_a_whole_proposal_in_one_click_and_a_second_click_changes_nothing(
    client: TestClient, fake: FakeServices
) -> None:
    login(client, INSTITUTE_TOKEN)
    draft = fake.draft("project", "p1", lead={"institute": "Flemish Institute", "name": "x"})
    page = client.get(f"/consortia/{draft['id']}").text
    assert "Invite a whole proposal" in page and "Invite these 1 organisations" in page
    form = {"csrf_token": csrf_of(page), "company_id": [COMPANY_ID], "message": "All of you"}
    for _ in range(2):
        r = client.post(f"/consortia/{draft['id']}/invite-all", data=form)
        assert r.status_code == 303, r.text
    assert [(i["company_id"], i["message"]) for i in draft["invitations"]] == [(COMPANY_ID, "All of you")]
    assert "Invite a whole proposal" not in client.get(f"/consortia/{draft['id']}").text  # everyone is invited


def test_an_email_address_shows_it_waits_for_confirmation_until_it_is_confirmed(
    client: TestClient, fake: FakeServices
) -> None:
    login(client, COMPANY_TOKEN)
    form = client.get("/subscription").text
    client.post("/subscription", data={"csrf_token": csrf_of(form), "domains": "space", "min_score": "0.2"})
    form = client.get("/subscription").text
    r = client.post("/subscription/email", data={"csrf_token": csrf_of(form), "address": "ops@acme.example"})
    assert r.status_code == 303
    page = client.get("/subscription").text
    assert "Waiting for confirmation" in page and "Active: to" not in page
    assert fake.subscription is not None
    fake.subscription["channels"]["email"]["confirmation_error"] = "mail server refused: 550"
    assert "could not be sent yet: mail server refused: 550" in client.get("/subscription").text
    fake.subscription["channels"]["email"] |= {"confirmed": True, "confirmation_error": None}
    page = client.get("/subscription").text
    assert "Active: to ops@acme.example" in page and "Waiting for confirmation" not in page


def test_the_funnel_shows_on_the_project_page_for_its_institute_and_on_a_companys_invitations(
    client: TestClient, fake: FakeServices
) -> None:
    login(client, INSTITUTE_TOKEN)
    form = client.get("/projects/new").text
    data = {
        "csrf_token": csrf_of(form),
        "title": "Drone detection",
        "summary": "Find drones",
        "programme": "FSDB",
        "domains": ["cybersecurity"],
        "sought_capabilities": ["Radar"],
        "partners_wanted": "3",
        "contact_email": "lab@example.org",
    }
    project = client.post("/projects/new", data=data).headers["location"]
    page = client.get(project).text
    assert "From suggestion to funding" in page and "<dt>Suggested</dt><dd>7</dd>" in page
    login(client, COMPANY_TOKEN)
    assert "<dt>Funded</dt><dd>1</dd>" in client.get("/invitations").text
    assert "From suggestion to funding" not in client.get(project).text  # not the company's project
