"""Consortium pages: the lead's draft (roster, invitations, rule checks, coverage, gaps), the drafts list,
and a company's invitations with accept/decline. Every decision is the consortia service's; the views
only forward the form to its API with the session's token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.portal.clients.base import Forbidden, Invalid, NotFound, Unavailable
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


async def funnel_or_none(page: PageContext, *, project_id: str | None = None, company_id: str | None = None) -> Any:
    """The funnel when this account may see it and the consortia service answers; the page shows without it."""
    try:
        if project_id is not None:
            return await page.services.consortia.project_funnel(project_id, token=page.token or "")
        if company_id is not None:
            return await page.services.consortia.company_funnel(company_id, token=page.token or "")
    except (Forbidden, NotFound, Unavailable):
        return None
    return None


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


async def proposals_to_invite(page: PageContext, draft: dict[str, Any]) -> list[dict[str, Any]]:
    """The matcher's proposals for the draft's target, each with the members not yet on the roster or invited."""
    try:
        found = await page.services.matching.proposals(draft["target_type"], draft["target_id"], token=page.token or "")
    except (Forbidden, NotFound):  # not computed yet, or not this account's to see
        return []
    taken = {m["company_id"] for m in draft["members"]} | {i["company_id"] for i in draft["invitations"]}
    out = []
    for proposal in found.get("proposals", []):
        # The posting institute appears in FSDB proposals as a member; it leads here, it is not invited.
        fresh = [m for m in proposal.get("members", []) if m["company_id"] not in taken and m["role"] != "coordinator"]
        if fresh:
            out.append({"rank": proposal.get("rank"), "members": fresh})
    return out


async def _draft_page(page: PageContext, consortium_id: str, *, error: str = "", status: int = 200) -> Response:
    draft = await page.services.consortia.get(consortium_id, token=page.token or "")
    lead = leads(page, draft)
    return render(
        page,
        "pages/consortium.html",
        status=status,
        draft=draft,
        lead=lead,
        proposals=await proposals_to_invite(page, draft) if lead and draft["status"] == "draft" else [],
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


@router.post("/consortia/{consortium_id}/invite-all")
async def invite_all(consortium_id: str, page: Page, form: FormDep) -> Response:
    """ "Invite this whole proposal": one invitation per member; one already invited is skipped, not an error."""
    need(page, *ORGANISATIONS)
    message = text(form, "message")
    refused: list[str] = []
    for company_id in form.getlist("company_id"):
        try:
            await page.services.consortia.invite(
                consortium_id, {"company_id": str(company_id), "message": message}, token=page.token or ""
            )
        except Invalid as exc:
            if exc.status != 409:  # 409: already invited or a member, which is what was asked
                refused.append(str(exc.detail or exc))
        except NotFound as exc:  # e.g. a member the registry no longer knows
            refused.append(str(exc.detail or exc))
    if refused:
        return await _draft_page(page, consortium_id, error="; ".join(refused), status=422)
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
    funnel = await funnel_or_none(page, company_id=user.company_id)
    note = page.request.query_params.get("note", "")
    return render(page, "pages/invitations.html", invitations=rows, note=note, funnel=funnel)


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
