"""The operators' page: each service's health, outbox backlog and dead letters; accounts and tokens."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.portal import labels
from services.portal.clients.base import ApiError, Invalid
from services.portal.forms import FormState, optional, refused, text
from services.portal.web import FormDep, Page, PageContext, need, redirect, render

router = APIRouter()
SERVICES = ("registry", "projects", "calls", "matching", "alerts")


async def _service_status(page: PageContext, name: str) -> dict[str, Any]:
    status, health = await page.services.health(name)
    dead: dict[str, Any] | None = None
    try:
        dead = await page.services.all[name].call("GET", "/ops/dead-letters", token=page.token)
    except ApiError as exc:
        dead = {"error": exc.status}
    return {"name": name, "ok": status == 200, "health": health, "dead_letters": dead}


async def _admin_page(
    page: PageContext, *, state: FormState | None = None, issued: dict[str, Any] | None = None, status: int = 200
) -> Response:
    need(page, "admin")
    statuses, accounts = await asyncio.gather(
        asyncio.gather(*(_service_status(page, name) for name in SERVICES)),
        page.services.registry.accounts(token=page.token or ""),
    )
    return render(
        page,
        "pages/admin.html",
        status=status,
        services=statuses,
        accounts=accounts,
        state=state or FormState(values={"role": "institute"}),
        issued=issued,
        role_options=[(r, labels.label(labels.ROLES, r)) for r in ("institute", "integrator", "admin")],
    )


@router.get("/admin")
async def admin(page: Page) -> Response:
    return await _admin_page(page)


@router.post("/admin/accounts")
async def create_account(page: Page, form: FormDep) -> Response:
    """Create an institute, integrator or admin account; its token is in this answer only."""
    need(page, "admin")
    body: dict[str, Any] = {}
    for name in ("role", "name"):
        optional(body, name, text(form, name))
    try:
        created = await page.services.registry.create_account(body, token=page.token or "")
    except Invalid as exc:
        return await _admin_page(page, state=refused(FormState(values=body), exc), status=422)
    return await _admin_page(page, issued=created)


@router.post("/admin/accounts/{account_id}/rotate")
async def rotate(account_id: str, page: Page, form: FormDep) -> Response:
    need(page, "admin")
    issued = await page.services.registry.rotate_token(account_id, token=page.token or "")
    return await _admin_page(page, issued={**issued, "id": account_id})


@router.post("/admin/accounts/{account_id}/revoke")
async def revoke(account_id: str, page: Page, form: FormDep) -> Response:
    need(page, "admin")
    await page.services.registry.revoke_tokens(account_id, token=page.token or "")
    return redirect("/admin?revoked=1")
