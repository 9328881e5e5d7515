"""Home, login, logout, company self-registration and the language switch."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.portal import labels
from services.portal.clients.base import Invalid, RateLimited, Unauthorized
from services.portal.forms import FormState, add_row_pressed, comma_list, many, optional, refused, text
from services.portal.i18n import LANG_COOKIE, LOCALES, _
from services.portal.security import csrf_token, safe_next
from services.portal.web import FormDep, Page, PageContext, redirect, render

log = logging.getLogger(__name__)
router = APIRouter()

HOME_BY_ROLE = {"company": "/inbox", "institute": "/projects", "admin": "/admin", "integrator": "/integrators"}
YEAR_S = 365 * 24 * 3600


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> JSONResponse:
    """200 when the session database answers (the services have their own /healthz)."""
    try:
        await request.app.state.portal.sessions.db.ping()
    except Exception as exc:  # reported, not raised: this is the health endpoint
        return JSONResponse({"service": "portal", "database": f"unreachable: {type(exc).__name__}"}, status_code=503)
    return JSONResponse({"service": "portal", "database": "ok"})


@router.get("/", response_class=HTMLResponse)
async def home(page: Page) -> Response:
    return render(page, "pages/home.html")


def _login_page(page: PageContext, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    request = page.request
    return render(
        page,
        "pages/login.html",
        status=status,
        error=error,
        next=safe_next(request.query_params.get("next"), ""),
        expired=request.query_params.get("expired") == "1",
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(page: Page) -> Response:
    return _login_page(page)


@router.post("/login")
async def login(page: Page, form: FormDep) -> Response:
    """Check the token with the registry (who is this?), then start a new session for that account."""
    token = text(form, "token")
    if not token:
        return _login_page(page, error=_("Paste your API token."), status=422)
    try:
        account = await page.services.registry.whoami(token)
    except Unauthorized:
        return _login_page(page, error=_("This token is not valid (or was revoked)."), status=401)
    except RateLimited:
        return _login_page(page, error=_("Too many failed attempts. Wait a minute and try again."), status=429)
    return await _start_session(page, token, account, safe_next(text(form, "next"), ""))


async def _start_session(page: PageContext, token: str, account: dict[str, object], target: str) -> Response:
    portal = page.portal
    old = page.request.cookies.get(portal.session_cookie)
    session_id = await portal.sessions.create(token=token, account=account, replaces=old)
    response = redirect(target or HOME_BY_ROLE.get(str(account.get("role")), "/"))
    portal.set_cookie(response, portal.session_cookie, session_id)
    return response


@router.post("/logout")
async def logout(page: Page, form: FormDep) -> Response:
    if page.user is not None:
        await page.portal.sessions.end(page.user.session_id)
    response = redirect("/")
    response.delete_cookie(page.portal.session_cookie, path="/")
    return response


@router.post("/lang")
async def switch_language(page: Page, form: FormDep) -> Response:
    lang = text(form, "lang")
    response = redirect(safe_next(text(form, "next")))
    if lang in LOCALES:
        page.portal.set_cookie(response, LANG_COOKIE, lang, max_age=YEAR_S)
    return response


# ---------------------------------------------------------------- company self-registration


def company_body(form: FormDep) -> dict[str, object]:
    """A company profile from the form, under the API's field names (blanks left out)."""
    body: dict[str, object] = {}
    for name in ("name", "country", "city", "size", "organisation_type", "contact_email"):
        optional(body, name, text(form, name))
    for name in ("website", "enterprise_number", "pic", "parent_group"):
        optional(body, name, text(form, name))
    body["domains"] = many(form, "domains")
    body["capabilities"] = many(form, "capabilities")
    body["keywords"] = comma_list(form, "keywords")
    return body


def profile_state(values: dict[str, object]) -> FormState:
    state = FormState(values=dict(values))
    keywords = values.get("keywords")
    if isinstance(keywords, list):
        state.values["keywords"] = ", ".join(str(k) for k in keywords)
    return state


def _register_page(page: PageContext, state: FormState, status: int = 200) -> HTMLResponse:
    taxonomy = page.portal.taxonomy
    return render(
        page,
        "pages/register.html",
        status=status,
        state=state,
        domain_options=labels.domain_options(taxonomy),
        size_options=labels.options(labels.SIZES),
        type_options=labels.options(labels.ORGANISATION_TYPES),
    )


@router.get("/register", response_class=HTMLResponse)
async def register_form(page: Page) -> Response:
    return _register_page(page, FormState(values={"country": "BE", "organisation_type": "company"}))


@router.post("/register")
async def register(page: Page, form: FormDep) -> Response:
    body = company_body(form)
    state = profile_state(body)
    state.values["keywords"] = text(form, "keywords")
    if add_row_pressed(form, state):
        return _register_page(page, state)
    try:
        created = await page.services.registry.register_company(body)
    except Invalid as exc:
        return _register_page(page, refused(state, exc), status=422)
    token = str(created["api_token"])
    account = {"id": created["account_id"], "role": "company", "name": created["name"], "company_id": created["id"]}
    session_id = await page.portal.sessions.create(
        token=token, account=account, replaces=page.request.cookies.get(page.portal.session_cookie)
    )
    # The token page is the answer to this POST itself: the token is never in a URL, and shown once.
    page.user = await page.portal.sessions.load(session_id)
    if page.user is not None:
        page.csrf = csrf_token(page.portal.settings.secret, session_id)
    response = render(page, "pages/registered.html", company=created, token=token)
    page.portal.set_cookie(response, page.portal.session_cookie, session_id)
    return response
