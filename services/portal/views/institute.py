"""An institute's pages: its projects, posting and editing one, and the live suggestions and proposals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.portal import i18n, labels
from services.portal.clients.base import ApiError, Forbidden, Invalid, Unauthorized
from services.portal.forms import FormState, add_row_pressed, many, number, optional, refused, text
from services.portal.views.consortia import funnel_or_none
from services.portal.web import FormDep, Page, PageContext, need, redirect, render

log = logging.getLogger(__name__)
router = APIRouter()


def _institute(page: PageContext) -> str | None:
    """The institute name projects are posted under (None for an admin, who names it in the form)."""
    return need(page, "institute").institute


@router.get("/projects")
async def my_projects(page: Page) -> Response:
    institute = _institute(page)
    listing = await page.services.projects.list(token=page.token, institute=institute, limit=100)
    return render(page, "pages/projects.html", listing=listing, institute=institute)


# ---------------------------------------------------------------- post and edit


def project_body(form: FormDep, *, institute: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("title", "summary", "programme", "contact_email", "deadline"):
        optional(body, name, text(form, name))
    body["institute"] = institute or text(form, "institute")
    body["domains"] = many(form, "domains")
    body["sought_capabilities"] = many(form, "sought_capabilities")
    optional(body, "partners_wanted", number(text(form, "partners_wanted")) if text(form, "partners_wanted") else "")
    return body


def _project_form(
    page: PageContext, state: FormState, *, project: dict[str, Any] | None = None, status: int = 200
) -> Response:
    taxonomy = page.portal.taxonomy
    return render(
        page,
        "pages/project_form.html",
        status=status,
        state=state,
        project=project,
        institute=page.user.institute if page.user else None,
        domain_options=labels.domain_options(taxonomy),
        programme_options=labels.programme_options(taxonomy),
    )


@router.get("/projects/new")
async def new_project(page: Page) -> Response:
    _institute(page)
    return _project_form(page, FormState(values={"programme": "FSDB", "partners_wanted": "5"}))


@router.post("/projects/new")
async def post_project(page: Page, form: FormDep) -> Response:
    institute = _institute(page)
    body = project_body(form, institute=institute)
    state = FormState(values={**body, "partners_wanted": text(form, "partners_wanted")})
    if add_row_pressed(form, state):
        return _project_form(page, state)
    try:
        created = await page.services.projects.post(body, token=page.token or "")
    except Invalid as exc:
        return _project_form(page, refused(state, exc), status=422)
    return redirect(f"/projects/{created['id']}")


@router.get("/projects/{project_id}/edit")
async def edit_project(project_id: str, page: Page) -> Response:
    _institute(page)
    project = await page.services.projects.get(project_id, token=page.token)
    values = {**project, "deadline": project.get("deadline") or "", "partners_wanted": str(project["partners_wanted"])}
    return _project_form(page, FormState(values=values), project=project)


@router.post("/projects/{project_id}/edit")
async def save_project(project_id: str, page: Page, form: FormDep) -> Response:
    institute = _institute(page)
    project = await page.services.projects.get(project_id, token=page.token)
    body = project_body(form, institute=institute or project["institute"])
    state = FormState(values={**body, "partners_wanted": text(form, "partners_wanted")})
    if add_row_pressed(form, state):
        return _project_form(page, state, project=project)
    if "deadline" not in body:
        body["deadline"] = None  # a cleared deadline field removes the deadline
    try:
        await page.services.projects.update(project_id, body, token=page.token or "")
    except Invalid as exc:
        return _project_form(page, refused(state, exc), project=project, status=422)
    return redirect(f"/projects/{project_id}")


@router.post("/projects/{project_id}/close")
async def close_project(project_id: str, page: Page, form: FormDep) -> Response:
    _institute(page)
    await page.services.projects.close(project_id, token=page.token or "")
    return redirect(f"/projects/{project_id}")


# ---------------------------------------------------------------- the project, its suggestions and proposals


async def _insight(page: PageContext, project_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Suggestions and consortia, or (None, None) when this account may not see them."""
    try:
        suggestions, consortia = await asyncio.gather(
            page.services.projects.suggestions(project_id, token=page.token),
            page.services.projects.consortia(project_id, token=page.token),
        )
    except (Forbidden, Unauthorized) as exc:
        if isinstance(exc, Unauthorized) and page.user is not None:
            raise
        return None, None
    return suggestions, consortia


def consortium_tables(consortia: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each proposal as a need-by-member grid: which member covers which need, with the evidence."""
    tables = []
    for proposal in (consortia or {}).get("proposals", []):
        members = proposal.get("members", [])
        needs: dict[str, dict[str, Any]] = {}
        for cover in proposal.get("coverage", []):
            row = needs.setdefault(cover["need"], {"need": cover["need"], "cells": {}})
            if cover.get("company_id"):
                row["cells"][cover["company_id"]] = cover
        tables.append({"proposal": proposal, "members": members, "needs": list(needs.values())})
    return tables


@router.get("/projects/{project_id}")
async def project(project_id: str, page: Page) -> Response:
    details = await page.services.projects.get(project_id, token=page.token)
    suggestions, consortia = await _insight(page, project_id)
    owner = page.user is not None and (page.user.is_admin or page.user.institute == details["institute"])
    return render(
        page,
        "pages/project.html",
        funnel=await funnel_or_none(page, project_id=project_id) if owner else None,
        project=details,
        suggestions=suggestions,
        version=insight_version(suggestions, consortia),
        tables=consortium_tables(consortia),
        insight=suggestions is not None,
        closed_note=page.request.query_params.get("closed"),
    )


async def _may_see_insight(project_id: str, page: Page) -> str:
    """Refuse before streaming (a 403 page or a login redirect cannot be sent once a stream started)."""
    need(page, "institute", "integrator")
    await page.services.projects.suggestions(project_id, token=page.token)
    return project_id


MayWatch = Annotated[str, Depends(_may_see_insight)]


def insight_version(suggestions: dict[str, Any] | None, consortia: dict[str, Any] | None) -> str:
    """What the page shows, as the two lists' computation times (the live stream compares it)."""
    return f"{(suggestions or {}).get('computed_at') or ''}|{(consortia or {}).get('computed_at') or ''}"


@router.get("/projects/{project_id}/live", response_class=EventSourceResponse)
async def project_live(
    page: Page, project_id: MayWatch, shown: Annotated[str, Query(alias="v", max_length=100)] = ""
) -> AsyncIterator[ServerSentEvent]:
    """Fresh suggestions and proposals as HTML whenever the projects service stores newer ones.

    The projects service streams only *that* something changed (``GET …/suggestions/stream``); the
    portal then reads both lists with the user's token and renders the same fragments as the page.
    ``v`` is what the page was rendered with: anything newer stored before the stream opened is sent
    at once, so nothing falls between the page and its stream.
    """
    i18n.set_locale(page.locale)
    env = page.portal.env
    client = page.services.projects
    try:
        async with client.events(f"/projects/{project_id}/suggestions/stream", token=page.token) as events:
            async for event, _data, event_id in events:
                if event not in ("ready", "changed"):
                    continue
                suggestions, consortia = await _insight(page, project_id)
                if event == "ready" and insight_version(suggestions, consortia) == shown:
                    continue
                context = {"user": page.user, "locale": page.locale, "suggestions": suggestions, "live": True}
                yield ServerSentEvent(
                    event="suggestions",
                    id=event_id,
                    raw_data=env.get_template("fragments/suggestions.html").render(context),
                )
                tables = consortium_tables(consortia)
                yield ServerSentEvent(
                    event="consortia",
                    raw_data=env.get_template("fragments/consortia.html").render(tables=tables, **context),
                )
    except ApiError as exc:  # the page keeps what it shows; the browser reconnects
        log.warning("project stream for %s ended: %s", project_id, exc)
