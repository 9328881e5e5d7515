"""Company use cases. They change the session and emit events; the unit of work commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from services.registry.models import MAX_HISTORY_ITEMS, Company, CompanyCreate, CompanyUpdate, HistoryIn
from shared.events.companies import CompanyRegistered, CompanyRemoved, CompanyUpdated
from shared.limits import EventTooLarge
from shared.outbox import UnitOfWork, utcnow


class CompanyNotFound(LookupError):
    pass


class DuplicateEnterpriseNumber(ValueError):
    pass


def _dump(model: CompanyCreate | CompanyUpdate, *, exclude_unset: bool) -> dict[str, Any]:
    data = model.model_dump(mode="json", exclude_unset=exclude_unset)
    return data


async def _ensure_unique_enterprise_number(uow: UnitOfWork, number: str | None, *, own_id: str | None) -> None:
    if number is None:
        return
    other = (await uow.session.exec(select(Company).where(Company.enterprise_number == number))).first()
    if other is not None and other.id != own_id:
        raise DuplicateEnterpriseNumber(f"enterprise number {number} is already registered")


async def register_company(uow: UnitOfWork, *, data: CompanyCreate) -> Company:
    """Store a new company and emit company.registered."""
    await _ensure_unique_enterprise_number(uow, data.enterprise_number, own_id=None)
    company = Company(**_dump(data, exclude_unset=False))
    company.refresh_derived()
    uow.session.add(company)
    uow.emit(CompanyRegistered(company=company.public_profile()), subject=company.id)
    return company


async def get_company_or_raise(uow: UnitOfWork, *, company_id: str) -> Company:
    company = await uow.session.get(Company, company_id)
    if company is None:
        raise CompanyNotFound(company_id)
    return company


async def update_company(uow: UnitOfWork, *, company_id: str, data: CompanyUpdate) -> Company:
    """Apply a partial update; emit company.updated naming the fields that really changed."""
    company = await get_company_or_raise(uow, company_id=company_id)
    changes = _dump(data, exclude_unset=True)
    if "enterprise_number" in changes:
        await _ensure_unique_enterprise_number(uow, changes["enterprise_number"], own_id=company_id)
    changed = sorted(k for k, v in changes.items() if getattr(company, k) != v)
    if not changed:
        return company
    for key in changed:
        setattr(company, key, changes[key])
    company.updated_at = utcnow()
    company.refresh_derived()
    uow.session.add(company)
    uow.emit(CompanyUpdated(company=company.public_profile(), changed_fields=changed), subject=company.id)
    return company


def _history_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return str(item.get("topic_id") or "").strip().upper(), " ".join(str(item.get("title") or "").split()).casefold()


async def add_project_history(
    uow: UnitOfWork, *, company_id: str, items: Sequence[HistoryIn]
) -> tuple[list[HistoryIn], int]:
    """Append the history items the company does not list yet (same topic id and title); emit company.updated.

    The row is locked for the transaction, so a concurrent edit cannot drop the additions. Returns the
    items added and how many new ones were left out because the profile already holds the maximum.
    """
    query = select(Company).where(col(Company.id) == company_id).with_for_update()
    company = (await uow.session.exec(query)).first()
    if company is None:
        raise CompanyNotFound(company_id)
    seen = {_history_key(h) for h in company.history}
    added: list[HistoryIn] = []
    no_room = 0
    for item in items:
        key = _history_key(item.model_dump())
        if key in seen:
            continue
        seen.add(key)
        if len(company.history) + len(added) >= MAX_HISTORY_ITEMS:
            no_room += 1
            continue
        added.append(item)
    kept = list(company.history)
    while added:
        company.history = [*kept, *(i.model_dump(mode="json") for i in added)]
        try:
            # The event carries the whole profile: it must stay publishable (docs/limits.md).
            uow.emit(CompanyUpdated(company=company.public_profile(), changed_fields=["history"]), subject=company.id)
        except EventTooLarge:
            added.pop()
            no_room += 1
            continue
        company.updated_at = utcnow()
        uow.session.add(company)
        break
    else:
        company.history = kept
    return added, no_room


async def remove_company(uow: UnitOfWork, *, company_id: str) -> None:
    company = await get_company_or_raise(uow, company_id=company_id)
    await uow.session.delete(company)
    uow.emit(CompanyRemoved(company_id=company_id), subject=company_id)


async def list_companies(
    uow: UnitOfWork, *, domain: str | None, country: str | None, q: str | None, limit: int, offset: int
) -> tuple[list[Company], int]:
    query = select(Company)
    if domain:
        query = query.where(col(Company.domains_csv).contains(f",{domain},"))
    if country:
        query = query.where(Company.country == country)
    if q:
        for word in q.lower().split():
            query = query.where(col(Company.search_text).contains(word))
    total = (await uow.session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = (
        await uow.session.exec(query.order_by(col(Company.name), col(Company.id)).limit(limit).offset(offset))
    ).all()
    return list(rows), total
