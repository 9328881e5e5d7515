"""HTTP routes of the alerts service: thin adapters from requests to domain functions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

from services.alerts import domain
from services.alerts.models import UUID_PATTERN, Alert, AlertPublic, SubscriptionIn, SubscriptionPublic
from shared.api_docs import errors
from shared.auth import Access, require
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory

# Subscriptions and the inbox are the company's own: the company itself and admins only.
router = APIRouter(dependencies=[Depends(require(Access.OWN_COMPANY))])

CompanyIdPath = Annotated[
    str, Path(pattern=UUID_PATTERN, max_length=36, description="The company's id in the registry (a UUID)")
]


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _alert(alert: Alert) -> AlertPublic:
    return AlertPublic.model_validate(alert, from_attributes=True)


@router.put("/subscriptions/{company_id}", response_model=SubscriptionPublic, tags=["subscriptions"])
async def put_subscription(company_id: CompanyIdPath, body: SubscriptionIn, request: Request) -> SubscriptionPublic:
    """Create the company's subscription, or replace it as a whole."""
    async with _uow(request)() as uow:
        subscription = await domain.put_subscription(uow, company_id=company_id.lower(), data=body)
        await uow.commit()
        return SubscriptionPublic.model_validate(subscription, from_attributes=True)


@router.get(
    "/subscriptions/{company_id}", response_model=SubscriptionPublic, tags=["subscriptions"], responses=errors(404)
)
async def get_subscription(company_id: CompanyIdPath, request: Request) -> SubscriptionPublic:
    async with _uow(request)() as uow:
        try:
            subscription = await domain.get_subscription_or_raise(uow, company_id=company_id.lower())
        except domain.SubscriptionNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "subscription not found") from exc
        return SubscriptionPublic.model_validate(subscription, from_attributes=True)


@router.get("/companies/{company_id}/alerts", response_model=Page[AlertPublic], tags=["alerts"])
async def list_alerts(company_id: CompanyIdPath, request: Request, page: PageDep) -> Page[AlertPublic]:
    """The company's alert inbox, newest first."""
    async with _uow(request)() as uow:
        rows, total = await domain.list_alerts(uow, company_id=company_id.lower(), limit=page.limit, offset=page.offset)
        return Page(items=[_alert(a) for a in rows], total=total, limit=page.limit, offset=page.offset)


# ":uuid" matches at routing level only: ".../alerts/stream" (delivery_api) is not an alert id.
@router.get(
    "/companies/{company_id}/alerts/{alert_id:uuid}", response_model=AlertPublic, tags=["alerts"], responses=errors(404)
)
async def get_alert(company_id: CompanyIdPath, alert_id: uuid.UUID, request: Request) -> AlertPublic:
    """One alert of the company's inbox (the portal's opportunity page)."""
    async with _uow(request)() as uow:
        try:
            alert = await domain.get_alert_or_raise(uow, company_id=company_id.lower(), alert_id=str(alert_id))
            return _alert(alert)
        except domain.AlertNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "alert not found") from exc
