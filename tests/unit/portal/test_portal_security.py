"""The portal's defences: headers, CSRF, session cookies and their life, escaping, safe redirects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.portal.bootstrap import build
from services.portal.security import safe_next
from services.portal.sessions import PortalSession, SessionStore, session_digest
from services.portal.settings import PortalSettings
from shared.db import Database
from shared.limits import DEFAULT_MAX_BODY_BYTES
from shared.outbox import utcnow
from tests.unit.portal.conftest import csrf_of, login
from tests.unit.portal.fakes import COMPANY_ID, COMPANY_TOKEN, INSTITUTE_TOKEN, FakeServices, company


def cookie(client: TestClient, name: str) -> str | None:
    return next((c.value for c in client.cookies.jar if c.name == name), None)


def test_every_page_sends_a_strict_policy_and_no_caching(client: TestClient) -> None:
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


def test_templates_carry_no_inline_script_or_style(client: TestClient) -> None:
    templates = Path(__file__).resolve().parents[3] / "services" / "portal" / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert "<style" not in text and " style=" not in text, template
        assert "<script>" not in text and " on" + "click=" not in text, template
        assert "|safe" not in text.replace(" ", ""), template


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, fake: FakeServices) -> None:
    r = client.post("/login", data={"token": COMPANY_TOKEN})
    assert r.status_code == 403
    assert not any(req.url.path == "/accounts/me" for req in fake.seen), "the token was checked anyway"


def test_a_csrf_token_of_another_browser_is_refused(client: TestClient, tmp_path: Path, fake: FakeServices) -> None:
    login(client, COMPANY_TOKEN)
    other = TestClient(client.app, base_url="http://127.0.0.1:8000", follow_redirects=False)
    foreign = csrf_of(other.get("/login").text)
    r = client.post("/subscription", data={"csrf_token": foreign, "min_score": "0.1"})
    assert r.status_code == 403
    assert fake.subscription is None


def test_login_sets_a_fresh_httponly_lax_session_and_logout_ends_it_on_the_server(client: TestClient) -> None:
    client.get("/login")
    domain = next(c.domain for c in client.cookies.jar if c.name == "bg_csrf")
    client.cookies.set("bg_session", "planted-by-an-attacker", domain=domain)
    login(client, COMPANY_TOKEN)
    first = cookie(client, "bg_session")
    assert first and first != "planted-by-an-attacker"
    login(client, COMPANY_TOKEN)
    second = cookie(client, "bg_session")
    assert second != first, "the session id is rotated at every login"

    r = client.get("/inbox")
    assert r.status_code == 200
    assert not any(h.startswith("bg_session") for h in r.headers.get_list("set-cookie"))  # set at login only
    form = client.get("/inbox").text
    r = client.post("/logout", data={"csrf_token": csrf_of(form)})
    assert r.status_code == 303
    # The old cookie, replayed, opens nothing: the row is gone.
    client.cookies.set("bg_session", str(second), domain=domain)
    assert client.get("/inbox").status_code == 303


def test_the_session_cookie_flags(tmp_path: Path, fake: FakeServices) -> None:
    for env, secure in (("local", False), ("test", True)):
        settings = PortalSettings(PORTAL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / env}.db", BONDGENOOT_ENV=env)  # type: ignore[call-arg]
        app, _portal = build(settings, transport=fake.transport())
        with TestClient(app, base_url="https://127.0.0.1:8000", follow_redirects=False) as c:
            page = c.get("/login")
            r = c.post("/login", data={"token": COMPANY_TOKEN, "csrf_token": csrf_of(page.text), "next": ""})
            header = next(h for h in r.headers.get_list("set-cookie") if "bg_session=" in h)
            assert "HttpOnly" in header and "SameSite=lax" in header.replace("Lax", "lax")
            assert ("Secure" in header) is secure
            assert header.startswith("__Host-bg_session=") is secure


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValueError, match="PORTAL_SECRET_KEY"):
        PortalSettings(BONDGENOOT_ENV="production", PORTAL_DATABASE_URL="postgresql://x/y")  # type: ignore[call-arg]


async def test_sessions_store_neither_the_id_nor_the_token_and_expire(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", tables=[PortalSession])
    await db.create_tables()
    now = [utcnow()]
    store = SessionStore(db, secret=b"k" * 32, idle_s=600, max_s=3600, clock=lambda: now[0])
    sid = await store.create(token="bgt_secret_token_value", account={"id": "a", "role": "company", "name": "X"})
    raw = b"".join(f.read_bytes() for f in sorted(tmp_path.glob("s.db*")))  # noqa: ASYNC240 (with the WAL)
    assert b"bgt_secret_token_value" not in raw and sid.encode() not in raw
    assert session_digest(sid).encode() in raw
    assert (await store.load(sid)).token == "bgt_secret_token_value"  # type: ignore[union-attr]
    now[0] += timedelta(seconds=601)
    assert await store.load(sid) is None, "idle sessions end"
    sid = await store.create(token="t", account={"id": "a", "role": "company"})
    for _ in range(8):  # 8 x 500 s > 3600 s, each step within the idle limit
        now[0] += timedelta(seconds=500)
        await store.load(sid)
    assert await store.load(sid) is None, "no session outlives PORTAL_SESSION_MAX"
    await db.dispose()


def test_user_text_is_escaped(client: TestClient, fake: FakeServices) -> None:
    fake.companies[COMPANY_ID] = company(
        name="<script>alert(1)</script>", capabilities=['<img src=x onerror="alert(2)">']
    )
    r = client.get(f"/companies/{COMPANY_ID}")
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<img src=x" not in r.text


def test_tokens_travel_in_bodies_and_headers_only(client: TestClient, fake: FakeServices) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"token": INSTITUTE_TOKEN, "csrf_token": csrf_of(page.text), "next": ""})
    assert INSTITUTE_TOKEN not in r.headers["location"]
    client.get("/projects")
    for request in fake.seen:
        assert INSTITUTE_TOKEN not in str(request.url)
    assert all(
        req.headers.get("authorization") == f"Bearer {INSTITUTE_TOKEN}"
        for req in fake.seen
        if req.url.path == "/projects"
    )


def test_a_bad_token_is_refused_with_the_reason_next_to_the_field(client: TestClient) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"token": "bgt_wrong", "csrf_token": csrf_of(page.text), "next": ""})
    assert r.status_code == 401
    assert 'aria-invalid="true"' in r.text and "not valid" in r.text


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/inbox", "/inbox"), ("https://evil.example/", "/"), ("//evil.example", "/"), ("/\\evil", "/"), ("", "/")],
)
def test_redirects_stay_on_the_portal(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_a_revoked_token_ends_the_session(client: TestClient) -> None:
    login(client, COMPANY_TOKEN)
    from tests.unit.portal import fakes

    saved = fakes.ACCOUNTS.pop(COMPANY_TOKEN)
    try:
        r = client.get("/inbox")
        assert r.status_code == 303 and r.headers["location"] == "/login?expired=1"
        assert client.get("/inbox").status_code == 303
    finally:
        fakes.ACCOUNTS[COMPANY_TOKEN] = saved
    asyncio.run(asyncio.sleep(0))


def test_a_form_over_the_body_limit_is_refused_before_it_is_read(client: TestClient, fake: FakeServices) -> None:
    """#9 §1: the portal parses forms into memory, so it refuses oversized bodies up front like every service."""
    csrf = csrf_of(client.get("/login").text)
    big = {"token": "x" * (DEFAULT_MAX_BODY_BYTES + 1), "csrf_token": csrf, "next": ""}
    declared = client.post("/login", data=big)
    assert declared.status_code == 413 and declared.json()["detail"][0]["loc"] == ["body"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield f"csrf_token={csrf}&next=&token=".encode()
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65_536 + 2):
            yield b"x" * 65_536

    streamed = client.post("/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    assert fake.seen == []  # nothing reached a service


def test_production_refuses_the_default_internal_token() -> None:
    """Without a real internal secret the services would ignore the browser address the portal names."""
    strong = "k" * 40
    with pytest.raises(ValueError, match="BONDGENOOT_INTERNAL_TOKEN"):
        PortalSettings(BONDGENOOT_ENV="production", PORTAL_DATABASE_URL="postgresql://x/y", PORTAL_SECRET_KEY=strong)  # type: ignore[call-arg]
    ok = PortalSettings(  # type: ignore[call-arg]
        BONDGENOOT_ENV="production",
        PORTAL_DATABASE_URL="postgresql://x/y",
        PORTAL_SECRET_KEY=strong,
        BONDGENOOT_INTERNAL_TOKEN="i" * 40,
    )
    assert ok.internal_secret == "i" * 40


@pytest.mark.parametrize(
    ("proxies", "forwarded", "named"),
    [
        ("", "1.2.3.4", "198.51.100.7"),  # no proxy trusted: a browser's own header names nobody
        ("198.51.100.7", "203.0.113.5", "203.0.113.5"),  # the portal sits behind a named proxy
    ],
)
def test_service_calls_name_the_browser_and_prove_the_portal_with_the_internal_secret(
    tmp_path: Path, fake: FakeServices, proxies: str, forwarded: str, named: str
) -> None:
    # (Not "browser": that name is pytest-playwright's fixture, and would start its event loop here.)
    settings = PortalSettings(  # type: ignore[call-arg]
        PORTAL_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        BONDGENOOT_ENV="local",
        BONDGENOOT_INTERNAL_TOKEN="i" * 40,
        BONDGENOOT_TRUSTED_PROXIES=proxies,
    )
    app, _portal = build(settings, transport=fake.transport())
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("198.51.100.7", 50000), follow_redirects=False) as c:
        c.headers["X-Forwarded-For"] = forwarded
        login(c, COMPANY_TOKEN)
    calls = [r for r in fake.seen if r.url.path == "/accounts/me"]
    assert calls and all(r.headers["x-forwarded-for"] == named for r in calls)
    assert all(r.headers["x-internal-token"] == "i" * 40 for r in calls)
