"""What every view shares: the request's page context (language, session, CSRF), rendering, errors.

Views are thin: they take a :data:`Page` (and, for a POST, a CSRF-checked :data:`FormDep`), call the
services through ``portal.services``, and return :func:`render` of one template. Anything that goes
wrong is raised and turned into a page here, in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from babel.dates import format_date, format_datetime, format_timedelta
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from services.portal import i18n, labels
from services.portal.clients.base import ApiError, Forbidden, NotFound, RateLimited, Unauthorized, Unavailable
from services.portal.clients.services import Services
from services.portal.i18n import _
from services.portal.security import PRESESSION_COOKIE, csrf_token, csrf_valid, new_presession
from services.portal.sessions import SessionStore, SessionUser
from services.portal.settings import PortalSettings
from shared.outbox import utcnow
from shared.taxonomy import Taxonomy

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Portal:
    """The composition root's wiring, on ``app.state.portal``."""

    settings: PortalSettings
    sessions: SessionStore
    services: Services
    env: Environment
    taxonomy: Taxonomy

    @property
    def session_cookie(self) -> str:
        # The __Host- prefix pins the cookie to this host and path "/" and requires Secure.
        return "__Host-bg_session" if self.settings.cookies_secure else "bg_session"

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.settings.cookies_secure,
        )


def portal_of(request: Request) -> Portal:
    return request.app.state.portal  # type: ignore[no-any-return]


@dataclass
class PageContext:
    request: Request
    portal: Portal
    locale: str
    user: SessionUser | None
    csrf: str
    new_presession: str | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        return self.user.token if self.user else None

    @property
    def services(self) -> Services:
        return self.portal.services

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"


def negotiate_locale(request: Request) -> str:
    locale = i18n.negotiate(request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))
    i18n.set_locale(locale)
    return locale


async def page_context(request: Request) -> PageContext:
    portal = portal_of(request)
    locale = negotiate_locale(request)
    user = await portal.sessions.load(request.cookies.get(portal.session_cookie))
    binding = user.session_id if user else request.cookies.get(PRESESSION_COOKIE)
    fresh = None
    if not binding or len(binding) > 100:
        fresh = binding = new_presession()
    page = PageContext(request, portal, locale, user, csrf_token(portal.settings.secret, binding), fresh)
    request.state.page = page
    return page


Page = Annotated[PageContext, Depends(page_context)]


class CsrfRejected(Exception):
    """A POST without the form's CSRF token (or with another's)."""


class LoginRequired(Exception):
    pass


class NotAllowed(Exception):
    pass


async def checked_form(request: Request, page: Page) -> FormData:
    """The POSTed form, once its CSRF token matched this browser's session (or pre-session)."""
    form = await request.form()
    binding = page.user.session_id if page.user else request.cookies.get(PRESESSION_COOKIE)
    if not csrf_valid(page.portal.settings.secret, binding, form.get("csrf_token")):
        log.warning("CSRF check failed: %s %s from %s", request.method, request.url.path, request.client)
        raise CsrfRejected()
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def need(page: PageContext, *roles: str) -> SessionUser:
    """The logged-in user if their role is one of ``roles`` (admins always pass); else login or 403."""
    if page.user is None:
        raise LoginRequired()
    if roles and page.user.role not in roles and not page.user.is_admin:
        raise NotAllowed()
    return page.user


# ---------------------------------------------------------------- rendering


def countdown(value: date | str | None) -> str:
    """ "in 3 weeks" / "2 days ago" in the page's language."""
    if not value:
        return ""
    day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
    delta = datetime.combine(day, datetime.min.time()) - datetime.combine(utcnow().date(), datetime.min.time())
    if delta.days == 0:
        return _("today")
    return format_timedelta(delta, add_direction=True, locale=i18n.current_locale(), threshold=1.5)


def as_date(value: date | str | None) -> str:
    if not value:
        return ""
    day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return format_date(day, format="medium", locale=i18n.current_locale())


def as_datetime(value: datetime | str | None) -> str:
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return format_datetime(moment, format="medium", locale=i18n.current_locale())


def percent(value: float | None) -> str:
    return "" if value is None else f"{round(float(value) * 100)}%"


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s, **kw: i18n.gettext(s, **kw),
        lambda s, p, n, **kw: i18n.ngettext(s, p, n, **kw),
        newstyle=True,
    )
    env.filters.update(countdown=countdown, as_date=as_date, as_datetime=as_datetime, percent=percent)
    env.globals.update(
        domain_label=labels.domain_label,
        label=labels.label,
        labels=labels,
        languages=[("en", "English"), ("nl", "Nederlands")],
    )
    return env


def render(page: PageContext, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    html = page.portal.env.get_template(template).render(
        page=page, user=page.user, csrf=page.csrf, locale=page.locale, taxonomy=page.portal.taxonomy, **context
    )
    response = HTMLResponse(html, status_code=status)
    if page.new_presession:
        page.portal.set_cookie(response, PRESESSION_COOKIE, page.new_presession)
    return response


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a POST the browser GETs the result (no resubmission on reload)."""
    return RedirectResponse(url, status_code=303)


# ---------------------------------------------------------------- errors as pages


async def _error_page(request: Request, status: int, title: str, text: str) -> HTMLResponse:
    page: PageContext | None = getattr(request.state, "page", None)
    if page is None:
        page = await page_context(request)
    return render(page, "pages/error.html", status=status, title=title, text=text)


async def on_login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target, safe='')}")


async def on_not_allowed(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 403, _("Not allowed"), _("This page is not available for your account."))


async def on_csrf(request: Request, exc: Exception) -> Response:
    return await _error_page(
        request,
        403,
        _("The form has expired"),
        _("For your safety the form was not sent. Go back, reload the page and try again."),
    )


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, Unauthorized):
        # The token worked at login and no longer does (revoked or rotated): the session is over.
        page: PageContext | None = getattr(request.state, "page", None)
        response = redirect("/login?expired=1")
        if page is not None and page.user is not None:
            await page.portal.sessions.end(page.user.session_id)
            response.delete_cookie(page.portal.session_cookie, path="/")
        return response
    if isinstance(exc, Forbidden):
        return await on_not_allowed(request, exc)
    if isinstance(exc, NotFound):
        return await _error_page(request, 404, _("Not found"), _("There is nothing at this address."))
    if isinstance(exc, RateLimited):
        return await _error_page(request, 429, _("Too many attempts"), _("Wait a minute and try again."))
    log.error("%s answered %s on %s %s: %s", exc.service, exc.status, request.method, request.url.path, exc.detail)
    text = _("The %(service)s service does not answer right now. Try again in a moment.", service=exc.service)
    return await _error_page(request, 503 if isinstance(exc, Unavailable) else 502, _("Unavailable"), text)


async def on_not_found(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 404, _("Not found"), _("There is nothing at this address."))


EXCEPTION_HANDLERS = {
    LoginRequired: on_login_required,
    NotAllowed: on_not_allowed,
    CsrfRejected: on_csrf,
    ApiError: on_api_error,
    404: on_not_found,
}
