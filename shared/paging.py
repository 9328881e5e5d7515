"""Paging of every listing: ``limit`` and ``offset`` with documented bounds (docs/limits.md)."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from shared.limits import MAX_PAGE_LIMIT, MAX_PAGE_OFFSET

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0


def _page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Items per page")] = 50,
    # Bounded: an unbounded offset overflows the database's 64-bit OFFSET (a 500, not a 422).
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(_page_params)]
