"""HTTP routes for accounts, their tokens, and token introspection for the other services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from services.registry import accounts
from services.registry.accounts import (
    AccountCreate,
    AccountIssued,
    AccountPublic,
    IntrospectIn,
    IntrospectOut,
    IssuedToken,
)
from shared.api_docs import errors
from shared.auth import ADMIN_ACCOUNT_ID, Access, CurrentPrincipal, Principal, internal_caller, require
from shared.http import Page, PageDep
from shared.outbox import UnitOfWorkFactory
from shared.validation import EntityIdPath

router = APIRouter(tags=["accounts"])

NOT_FOUND = "account not found"


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _not_the_admin_token(account_id: str) -> None:
    if account_id == ADMIN_ACCOUNT_ID:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the admin token comes from BONDGENOOT_ADMIN_TOKEN; change it there"
        )


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=AccountIssued, responses=errors(404, 409))
async def create_account(
    body: AccountCreate, request: Request, _: Annotated[Principal, Depends(require(Access.ADMIN))]
) -> AccountIssued:
    """Create an account (admins only) and return its API token — the only time it is shown."""
    async with _uow(request)() as uow:
        try:
            account, token = await accounts.create_account(uow, data=body)
        except accounts.CompanyMissing as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "company not found") from exc
        except accounts.AccountConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        await uow.commit()
        return AccountIssued(**accounts.public(account).model_dump(), api_token=token)


@router.get("/accounts", response_model=Page[AccountPublic], dependencies=[Depends(require(Access.ADMIN))])
async def list_accounts(request: Request, page: PageDep) -> Page[AccountPublic]:
    async with _uow(request)() as uow:
        rows, total = await accounts.list_accounts(uow, limit=page.limit, offset=page.offset)
        return Page(items=[accounts.public(a) for a in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/accounts/me", response_model=AccountPublic)
async def who_am_i(request: Request, principal: CurrentPrincipal) -> AccountPublic:
    """The account the token belongs to."""
    if principal.account_id == ADMIN_ACCOUNT_ID:
        return AccountPublic(
            id=principal.account_id, role="admin", name=principal.name, company_id=None, institute=None, created_at=None
        )
    return await get_account(principal.account_id, request)


@router.get(
    "/accounts/{account_id}",
    response_model=AccountPublic,
    dependencies=[Depends(require(Access.OWN_ACCOUNT))],
    responses=errors(404),
)
async def get_account(account_id: EntityIdPath, request: Request) -> AccountPublic:
    async with _uow(request)() as uow:
        try:
            return accounts.public(await accounts.get_account_or_raise(uow, account_id=account_id))
        except accounts.AccountNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc


@router.post(
    "/accounts/{account_id}/tokens/rotate",
    response_model=IssuedToken,
    dependencies=[Depends(require(Access.OWN_ACCOUNT))],
    responses=errors(404, 409),
)
async def rotate_token(account_id: EntityIdPath, request: Request) -> IssuedToken:
    """Issue a new token and revoke the earlier ones (other services stop accepting them within their cache TTL)."""
    _not_the_admin_token(account_id)
    async with _uow(request)() as uow:
        try:
            token = await accounts.rotate_token(uow, account_id=account_id)
        except accounts.AccountNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        await uow.commit()
    return IssuedToken(account_id=account_id, api_token=token)


@router.delete(
    "/accounts/{account_id}/tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(require(Access.OWN_ACCOUNT))],
    responses=errors(404, 409),
)
async def revoke_tokens(account_id: EntityIdPath, request: Request) -> Response:
    """Revoke every token of the account; an admin can issue a new one with rotate."""
    _not_the_admin_token(account_id)
    async with _uow(request)() as uow:
        try:
            await accounts.get_account_or_raise(uow, account_id=account_id)
        except accounts.AccountNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from exc
        await accounts.revoke_tokens(uow, account_id=account_id)
        await uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/introspect",
    response_model=IntrospectOut,
    response_model_exclude_none=True,
    tags=["internal"],
    dependencies=[Depends(internal_caller)],
)
async def introspect(body: IntrospectIn, request: Request) -> IntrospectOut:
    """Who a token belongs to (services only: ``X-Internal-Token``). ``active: false`` for anything unknown."""
    async with _uow(request)() as uow:
        principal = await accounts.resolve(uow.session, body.token)
    if principal is None:
        return IntrospectOut(active=False)
    return IntrospectOut(active=True, **principal.to_json())
