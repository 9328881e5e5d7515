"""Pages for everyone: calls (with "how well do we fit" for a company) and the company directory."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.portal import labels
from services.portal.web import Page, render

router = APIRouter()
PAGE_SIZE = 25
Filter = Query(None, max_length=100)


def _params(**values: Any) -> Any:
    """A function giving the query string of this listing at another offset (for the pager)."""
    kept = {k: v for k, v in values.items() if v not in (None, "")}

    def at(offset: int) -> str:
        return urlencode({**kept, "offset": offset})

    return at


@router.get("/calls")
async def calls(
    page: Page,
    programme: str | None = Filter,
    domain: str | None = Filter,
    status: str | None = Filter,
    offset: int = Query(0, ge=0, le=100_000),
) -> Response:
    listing = await page.services.calls.list(
        programme=programme, domain=domain, status=status, limit=PAGE_SIZE, offset=offset
    )
    context = {
        "listing": listing,
        "filters": {"programme": programme or "", "domain": domain or "", "status": status or ""},
        "params": _params(programme=programme, domain=domain, status=status),
        "domain_options": labels.domain_options(page.portal.taxonomy),
        "status_options": labels.options(labels.CALL_STATUSES),
        "programme_options": [(p.code, p.code) for p in page.portal.taxonomy.programmes],
    }
    if page.is_htmx:
        return render(page, "fragments/call_results.html", **context)
    return render(page, "pages/calls.html", **context)


@router.get("/calls/{call_id}")
async def call_detail(call_id: str, page: Page) -> Response:
    call = await page.services.calls.get(call_id)
    fit: dict[str, Any] | None = None
    ranked = False
    user = page.user
    if user is not None and user.role == "company" and user.company_id:
        suggestions = await page.services.calls.suggestions(call_id, token=user.token)
        ranked = suggestions.get("computed_at") is not None
        fit = next((s for s in suggestions.get("suggestions", []) if s["company_id"] == user.company_id), None)
    return render(page, "pages/call.html", call=call, fit=fit, ranked=ranked)


@router.get("/companies")
async def companies(
    page: Page,
    q: str | None = Query(None, max_length=200),
    domain: str | None = Filter,
    offset: int = Query(0, ge=0, le=100_000),
) -> Response:
    listing = await page.services.registry.companies(token=None, q=q, domain=domain, limit=PAGE_SIZE, offset=offset)
    context = {
        "listing": listing,
        "filters": {"q": q or "", "domain": domain or ""},
        "params": _params(q=q, domain=domain),
        "domain_options": labels.domain_options(page.portal.taxonomy),
    }
    if page.is_htmx:
        return render(page, "fragments/company_results.html", **context)
    return render(page, "pages/companies.html", **context)


@router.get("/companies/{company_id}")
async def company_profile(company_id: str, page: Page) -> Response:
    # Anonymous on purpose: the directory never shows contact details, whoever looks.
    company = await page.services.registry.company(company_id, token=None)
    return render(page, "pages/company.html", company=company)
