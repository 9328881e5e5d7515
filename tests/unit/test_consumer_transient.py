"""A database that is restarting is our outage, not the record's fault: the consumer waits, never dead-letters.

Found by the fault suite (``pg-restart``): asyncpg's "the database system is not yet accepting connections"
(SQLSTATE 57P03) reaches the consumer as a plain ``DBAPIError``, and healthy records went to the DLQ.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from shared.consumer import _is_transient


def as_sqlalchemy_raises(error: Exception) -> DBAPIError:
    """The exception a handler sees: asyncpg's error adapted by SQLAlchemy's dialect, then wrapped."""
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, error)
    except Exception as adapted:
        return DBAPIError.instance("SELECT 1", None, adapted, dbapi.Error, connection_invalidated=False)
    raise AssertionError("the dialect did not raise")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is not yet accepting connections"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
        asyncpg.exceptions.ConnectionFailureError("connection failure"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_restarting_or_unreachable_database_is_transient(error: Exception) -> None:
    assert _is_transient(as_sqlalchemy_raises(error))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
        asyncpg.exceptions.DivisionByZeroError("division by zero"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_bad_statement_or_bad_data_is_not_transient(error: Exception) -> None:
    assert not _is_transient(as_sqlalchemy_raises(error))
