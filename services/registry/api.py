"""HTTP routes of the registry: thin adapters from requests to domain functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from services.registry import domain
from services.registry.models import Company, CompanyCreate, CompanyPublic, CompanyUpdate
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory
from shared.validation import CountryCode, DomainSlug

router = APIRouter(tags=["companies"])


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _public(company: Company) -> CompanyPublic:
    return CompanyPublic.model_validate(company, from_attributes=True)


@router.post("/companies", status_code=status.HTTP_201_CREATED, response_model=CompanyPublic)
async def register_company(body: CompanyCreate, request: Request) -> CompanyPublic:
    async with _uow(request)() as uow:
        try:
            company = await domain.register_company(uow, data=body)
        except domain.DuplicateEnterpriseNumber as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return _public(company)


@router.get("/companies/{company_id}", response_model=CompanyPublic)
async def get_company(company_id: str, request: Request) -> CompanyPublic:
    async with _uow(request)() as uow:
        try:
            return _public(await domain.get_company_or_raise(uow, company_id=company_id))
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc


@router.patch("/companies/{company_id}", response_model=CompanyPublic)
async def update_company(company_id: str, body: CompanyUpdate, request: Request) -> CompanyPublic:
    async with _uow(request)() as uow:
        try:
            company = await domain.update_company(uow, company_id=company_id, data=body)
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc
        except domain.DuplicateEnterpriseNumber as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return _public(company)


@router.delete("/companies/{company_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_company(company_id: str, request: Request) -> Response:
    async with _uow(request)() as uow:
        try:
            await domain.remove_company(uow, company_id=company_id)
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc
        await uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/companies", response_model=Page[CompanyPublic])
async def list_companies(
    request: Request,
    page: PageDep,
    domain_: Annotated[DomainSlug | None, Query(alias="domain")] = None,
    country: CountryCode | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[CompanyPublic]:
    async with _uow(request)() as uow:
        rows, total = await domain.list_companies(
            uow, domain=domain_, country=country, q=q, limit=page.limit, offset=page.offset
        )
        return Page(items=[_public(c) for c in rows], total=total, limit=page.limit, offset=page.offset)
