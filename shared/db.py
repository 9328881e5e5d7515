"""Database access: one async engine per service, created by the service's composition root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# Any constant will do: advisory locks are per database, and only create_tables takes this one.
SCHEMA_LOCK_ID = 0x0B0D_5C4E


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


class Database:
    """An engine and session factory for one service's own database."""

    def __init__(self, url: str, *, tables: Sequence[type[SQLModel]]) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_pre_ping=not self.is_sqlite,
            # SQLite allows one writer: wait for the lock instead of failing with "database is locked".
            connect_args={"timeout": 30} if self.is_sqlite else {},
        )
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._tables: list[Table] = [model.__table__ for model in tables]  # type: ignore[attr-defined]

    async def create_tables(self) -> None:
        """Create this service's tables (and only these) if they do not exist yet.

        On PostgreSQL a transaction-scoped advisory lock serialises replicas that start together:
        concurrent ``CREATE TABLE`` statements otherwise fail on the catalog's unique index.
        """
        async with self.engine.begin() as conn:
            if self.is_sqlite:
                await conn.execute(text("PRAGMA journal_mode=WAL"))
            else:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_ID})
            await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=self._tables))

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
