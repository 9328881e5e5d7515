"""Accounts and API tokens: the registry is where identities live.

An account belongs to one organisation and has one role (``shared.auth.Role``). Its API token is
random (``bgt_`` + 256 bits), shown once when issued, and stored only as its SHA-256; rotating it
revokes every earlier token of the account, revoking leaves the account without a working token.
The other services learn who a token belongs to from ``POST /auth/introspect``.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from pydantic import BaseModel, model_validator
from pydantic import Field as PField
from sqlalchemy import func, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.models import Company
from shared.auth import TOKEN_PREFIX, Principal, Role, digests_equal, token_digest
from shared.db import Database
from shared.outbox import UnitOfWork, utcnow
from shared.validation import ShortText


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    role: str = Field(index=True, max_length=20)
    name: str = Field(max_length=200)
    company_id: str | None = Field(default=None, unique=True, max_length=36)
    """Company accounts: the company they speak for (one account per company)."""
    institute: str | None = Field(default=None, unique=True, max_length=200)
    """Institute accounts: the institute's name as its projects carry it (unique)."""
    created_at: datetime = Field(default_factory=utcnow)

    def principal(self) -> Principal:
        return Principal(
            account_id=self.id,
            role=self.role,  # type: ignore[arg-type]
            name=self.name,
            company_id=self.company_id,
            institute=self.institute,
        )


class ApiToken(SQLModel, table=True):
    """One issued token, by digest; the token itself is never stored."""

    __tablename__ = "api_tokens"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    account_id: str = Field(index=True, max_length=36)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = Field(default=None)


class AccountCreate(BaseModel):
    """A new account. Institute names are unique; a company account needs an existing company."""

    role: Role
    name: ShortText | None = PField(default=None, description="The organisation; for a company, its name by default")
    company_id: str | None = PField(default=None, max_length=36, description="Company accounts only")

    @model_validator(mode="after")
    def _fits_the_role(self) -> AccountCreate:
        if self.role == "company" and not self.company_id:
            raise ValueError("a company account needs company_id")
        if self.role != "company" and self.company_id:
            raise ValueError("only company accounts have a company_id")
        if self.role != "company" and not self.name:
            raise ValueError(f"a {self.role} account needs a name")
        return self


class AccountPublic(BaseModel):
    id: str
    role: Role
    name: str
    company_id: str | None
    institute: str | None
    created_at: datetime | None


class IssuedToken(BaseModel):
    """A token as it is handed out: once."""

    account_id: str
    api_token: str = PField(description="Shown once; store it safely. Send it as `Authorization: Bearer …`")


class AccountIssued(AccountPublic):
    api_token: str = PField(description="Shown once; store it safely. Send it as `Authorization: Bearer …`")


class IntrospectIn(BaseModel):
    token: str = PField(max_length=1000)


class IntrospectOut(BaseModel):
    active: bool
    account_id: str | None = None
    role: Role | None = None
    name: str | None = None
    company_id: str | None = None
    institute: str | None = None


class AccountNotFound(LookupError):
    pass


class AccountConflict(ValueError):
    pass


class CompanyMissing(LookupError):
    pass


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def public(account: Account) -> AccountPublic:
    return AccountPublic.model_validate(account, from_attributes=True)


async def _issue(uow: UnitOfWork, account_id: str) -> str:
    token = new_token()
    uow.session.add(ApiToken(account_id=account_id, token_hash=token_digest(token)))
    return token


async def create_account(uow: UnitOfWork, *, data: AccountCreate) -> tuple[Account, str]:
    """Store a new account and issue its first token (returned, never stored)."""
    if data.role == "company":
        company = await uow.session.get(Company, (data.company_id or "").lower())
        if company is None:
            raise CompanyMissing(data.company_id)
        return await create_company_account(uow, company=company)
    institute = data.name if data.role == "institute" else None
    if institute is not None:
        taken = (await uow.session.exec(select(Account).where(Account.institute == institute))).first()
        if taken is not None:
            raise AccountConflict(f"an account for institute {institute!r} exists already")
    account = Account(role=data.role, name=data.name or "", institute=institute)
    uow.session.add(account)
    return account, await _issue(uow, account.id)


async def create_company_account(uow: UnitOfWork, *, company: Company) -> tuple[Account, str]:
    taken = (await uow.session.exec(select(Account).where(Account.company_id == company.id))).first()
    if taken is not None:
        raise AccountConflict(f"company {company.id} has an account already")
    account = Account(role="company", name=company.name, company_id=company.id)
    uow.session.add(account)
    return account, await _issue(uow, account.id)


async def get_account_or_raise(uow: UnitOfWork, *, account_id: str) -> Account:
    account = await uow.session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


async def list_accounts(uow: UnitOfWork, *, limit: int, offset: int) -> tuple[list[Account], int]:
    total = (await uow.session.exec(select(func.count()).select_from(Account))).one()
    query = select(Account).order_by(col(Account.created_at), col(Account.id)).limit(limit).offset(offset)
    return list((await uow.session.exec(query)).all()), total


async def revoke_tokens(uow: UnitOfWork, *, account_id: str) -> None:
    """Revoke every live token of the account (the account stays)."""
    await uow.session.exec(
        update(ApiToken)
        .where(col(ApiToken.account_id) == account_id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def rotate_token(uow: UnitOfWork, *, account_id: str) -> str:
    """Revoke every live token of the account and issue a new one."""
    await get_account_or_raise(uow, account_id=account_id)
    await revoke_tokens(uow, account_id=account_id)
    return await _issue(uow, account_id)


async def remove_company_account(uow: UnitOfWork, *, company_id: str) -> None:
    """The company is gone: its account and tokens go too."""
    account = (await uow.session.exec(select(Account).where(Account.company_id == company_id))).first()
    if account is None:
        return
    await revoke_tokens(uow, account_id=account.id)
    await uow.session.delete(account)


async def resolve(session: AsyncSession, token: str) -> Principal | None:
    """The principal of a live token, or None."""
    digest = token_digest(token)
    row = (
        await session.exec(
            select(ApiToken, Account)
            .join(Account, col(Account.id) == col(ApiToken.account_id))
            .where(col(ApiToken.token_hash) == digest, col(ApiToken.revoked_at).is_(None))
        )
    ).first()
    if row is None:
        return None
    stored, account = row
    # The lookup is by digest; compare once more in constant time so no branch depends on a prefix.
    if not digests_equal(stored.token_hash, digest):
        return None
    return account.principal()


class AccountResolver:
    """The registry's own token resolver: a lookup in its database, no cache, no HTTP."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def resolve(self, token: str, *, fresh: bool = False) -> Principal | None:
        """Always fresh: the database is the truth and nothing is cached."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        async with self.db.sessions() as session:
            return await resolve(session, token)

    async def aclose(self) -> None:
        return None
