"""Consortium pages: the lead's draft (roster, invitations, rule checks, coverage, gaps), the drafts list,
and a company's invitations with accept/decline. Every decision is the consortia service's; the views
only forward the form to its API with the session's token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.portal.clients.base import Invalid
from services.portal.forms import text
from services.portal.web import FormDep, Page, PageContext, need, redirect, render

router = APIRouter()

ORGANISATIONS = ("institute", "company")


def leads(page: PageContext, draft: dict[str, Any]) -> bool:
    """Whether the logged-in organisation leads the draft (the service decides; this only picks the view)."""
    user, lead = page.user, draft["lead"]
    if user is None:
        return False
    if user.is_admin:
        return True
    if lead["kind"] == "company":
        return user.company_id == lead["id"]
    return user.institute == lead["id"]


@router.post("/consortia/open")
async def open_draft(page: Page, form: FormDep) -> Response:
    need(page, *ORGANISATIONS)
    draft = await page.services.consortia.open(
        text(form, "target_type"), text(form, "target_id"), token=page.token or ""
    )
    return redirect(f"/consortia/{draft['id']}")


@router.get("/consortia")
async def my_consortia(page: Page) -> Response:
    need(page, *ORGANISATIONS)
    drafts = await page.services.consortia.mine(token=page.token or "")
    return render(page, "pages/my_consortia.html", drafts=drafts)


async def _draft_page(page: PageContext, consortium_id: str, *, error: str = "", status: int = 200) -> Response:
    draft = await page.services.consortia.get(consortium_id, token=page.token or "")
    return render(
        page,
        "pages/consortium.html",
        status=status,
        draft=draft,
        lead=leads(page, draft),
        error=error,
        note=page.request.query_params.get("note", ""),
    )


@router.get("/consortia/{consortium_id}")
async def draft(consortium_id: str, page: Page) -> Response:
    need(page, *ORGANISATIONS)
    return await _draft_page(page, consortium_id)


@router.post("/consortia/{consortium_id}/invite")
async def invite(consortium_id: str, page: Page, form: FormDep) -> Response:
    need(page, *ORGANISATIONS)
    body = {"company_id": text(form, "company_id"), "message": text(form, "message")}
    try:
        await page.services.consortia.invite(consortium_id, body, token=page.token or "")
    except Invalid as exc:  # already invited, a closed draft, a too long message: say so on the page
        message = next(iter(exc.fields.values()), "") or str(exc.detail or "")
        return await _draft_page(page, consortium_id, error=message, status=exc.status)
    return redirect(f"/consortia/{consortium_id}?note=invited")


@router.post("/consortia/{consortium_id}/invitations/{invitation_id}/withdraw")
async def withdraw(consortium_id: str, invitation_id: str, page: Page, form: FormDep) -> Response:
    need(page, *ORGANISATIONS)
    await page.services.consortia.withdraw(invitation_id, token=page.token or "")
    return redirect(f"/consortia/{consortium_id}?note=withdrawn")


@router.post("/consortia/{consortium_id}/members/{company_id}/remove")
async def remove_member(consortium_id: str, company_id: str, page: Page, form: FormDep) -> Response:
    user = need(page, *ORGANISATIONS)
    await page.services.consortia.remove_member(consortium_id, company_id, token=page.token or "")
    if user.company_id == company_id:  # left: the draft is no longer theirs to see
        return redirect("/consortia")
    return redirect(f"/consortia/{consortium_id}?note=removed")


@router.post("/consortia/{consortium_id}/outcome")
async def outcome(consortium_id: str, page: Page, form: FormDep) -> Response:
    need(page, *ORGANISATIONS)
    await page.services.consortia.outcome(consortium_id, text(form, "status"), token=page.token or "")
    return redirect(f"/consortia/{consortium_id}?note=outcome")


# ---------------------------------------------------------------- the invitee's side


@router.get("/invitations")
async def invitations(page: Page) -> Response:
    user = need(page, "company")
    if user.company_id is None:  # an admin has no company inbox
        return render(page, "pages/invitations.html", invitations=[])
    rows = await page.services.consortia.invitations(user.company_id, token=page.token or "")
    return render(page, "pages/invitations.html", invitations=rows, note=page.request.query_params.get("note", ""))


@router.post("/invitations/{invitation_id}/accept")
async def accept(invitation_id: str, page: Page, form: FormDep) -> Response:
    need(page, "company")
    answered = await page.services.consortia.accept(invitation_id, token=page.token or "")
    return redirect(f"/consortia/{answered['consortium_id']}?note=joined")


@router.post("/invitations/{invitation_id}/decline")
async def decline(invitation_id: str, page: Page, form: FormDep) -> Response:
    need(page, "company")
    await page.services.consortia.decline(invitation_id, text(form, "reason") or None, token=page.token or "")
    return redirect("/invitations?note=declined")
