"""HTTP routes of the registry: thin adapters from requests to domain functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import Field

from services.registry import accounts, domain
from services.registry.models import Company, CompanyCreate, CompanyPublic, CompanyUpdate
from shared.api_docs import errors
from shared.auth import Access, OptionalPrincipal, Principal, require
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory
from shared.validation import CountryCode, DomainSlug, EntityIdPath

router = APIRouter(tags=["companies"])


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


class CompanyRead(CompanyPublic):
    contact_email: str | None = Field(  # type: ignore[assignment]
        default=None,
        exclude_if=lambda v: v is None,
        description="Only shown to the company itself and to admins",
    )


class CompanyRegistration(CompanyPublic):
    account_id: str = Field(description="The company's account")
    api_token: str = Field(description="The company's API token: shown once; send it as `Authorization: Bearer …`")


def _public(company: Company, principal: Principal | None = None) -> CompanyRead:
    read = CompanyRead.model_validate(company, from_attributes=True)
    if principal is None or not (principal.is_admin or principal.owns_company(company.id)):
        read.contact_email = None  # contact details are private
    return read


@router.post(
    "/companies",
    status_code=status.HTTP_201_CREATED,
    response_model=CompanyRegistration,
    dependencies=[Depends(require(Access.REGISTER))],
    responses=errors(409),
)
async def register_company(body: CompanyCreate, request: Request) -> CompanyRegistration:
    """Register a company and its company account; the account's API token is in the answer, once."""
    async with _uow(request)() as uow:
        try:
            company = await domain.register_company(uow, data=body)
        except domain.DuplicateEnterpriseNumber as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        account, token = await accounts.create_company_account(uow, company=company)
        await uow.commit()
        return CompanyRegistration(
            **CompanyPublic.model_validate(company, from_attributes=True).model_dump(),
            account_id=account.id,
            api_token=token,
        )


@router.get("/companies/{company_id}", response_model=CompanyRead, responses=errors(404))
async def get_company(company_id: EntityIdPath, request: Request, principal: OptionalPrincipal) -> CompanyRead:
    async with _uow(request)() as uow:
        try:
            return _public(await domain.get_company_or_raise(uow, company_id=company_id), principal)
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc


@router.patch(
    "/companies/{company_id}",
    response_model=CompanyRead,
    dependencies=[Depends(require(Access.OWN_COMPANY))],
    responses=errors(404, 409),
)
async def update_company(
    company_id: EntityIdPath, body: CompanyUpdate, request: Request, principal: OptionalPrincipal
) -> CompanyRead:
    async with _uow(request)() as uow:
        try:
            company = await domain.update_company(uow, company_id=company_id, data=body)
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc
        except domain.DuplicateEnterpriseNumber as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return _public(company, principal)


@router.delete(
    "/companies/{company_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(require(Access.OWN_COMPANY))],
    responses=errors(404),
)
async def remove_company(company_id: EntityIdPath, request: Request) -> Response:
    """Remove the company; its account and tokens go with it."""
    async with _uow(request)() as uow:
        try:
            await domain.remove_company(uow, company_id=company_id)
        except domain.CompanyNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc
        await accounts.remove_company_account(uow, company_id=company_id)
        await uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/companies", response_model=Page[CompanyRead])
async def list_companies(
    request: Request,
    page: PageDep,
    principal: OptionalPrincipal,
    domain_: Annotated[DomainSlug | None, Query(alias="domain")] = None,
    country: CountryCode | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[CompanyRead]:
    async with _uow(request)() as uow:
        rows, total = await domain.list_companies(
            uow, domain=domain_, country=country, q=q, limit=page.limit, offset=page.offset
        )
        return Page(items=[_public(c, principal) for c in rows], total=total, limit=page.limit, offset=page.offset)
