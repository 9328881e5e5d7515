"""Portal sessions: random ids in an HttpOnly cookie, rows in the portal's own database.

Why a server-side store (and not a signed cookie holding the token): logout must end a session for
good, an operator must be able to end them all, and the API token must never sit in the browser
beyond the one moment it is pasted. Why the portal's own small database (SQLite by default,
PostgreSQL when ``PORTAL_DATABASE_URL`` says so, through ``shared.db``): the portal owns sessions and
nothing else, and must not reach into another service's tables.

What is stored, per session: the SHA-256 of the session id (the id itself lives only in the
cookie), who the account is (role, name, company, institute, as the registry said at login), the
times, and the account's API token *sealed* with AES-GCM under a key derived from the portal secret
and the session id. A copy of the table alone therefore yields neither a usable session nor a token.

A session ends at logout (the row is deleted), after ``PORTAL_SESSION_IDLE`` seconds without a
request, or ``PORTAL_SESSION_MAX`` seconds after login, whichever comes first. Logging in always
starts a new session id (the old one, if any, is deleted): no session fixation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Text, delete
from sqlmodel import Field, SQLModel, col

from shared.db import Database
from shared.outbox import utcnow

# Write last_seen_at at most this often: a session read is one primary-key lookup, not a write.
TOUCH_EVERY = timedelta(seconds=60)


class PortalSession(SQLModel, table=True):
    __tablename__ = "portal_sessions"

    id_digest: str = Field(primary_key=True, max_length=64)
    sealed_token: str = Field(sa_column=Column(Text, nullable=False))
    account_id: str = Field(max_length=64)
    role: str = Field(max_length=20)
    name: str = Field(default="", max_length=200)
    company_id: str | None = Field(default=None, max_length=36)
    institute: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


@dataclass(frozen=True)
class SessionUser:
    """The logged-in account of one request, with its API token unsealed for forwarding."""

    session_id: str
    account_id: str
    role: str
    name: str
    company_id: str | None
    institute: str | None
    token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class SessionStore:
    """Creates, loads and ends sessions; the only code that touches ``portal_sessions``."""

    def __init__(
        self, db: Database, *, secret: bytes, idle_s: int, max_s: int, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self._secret = secret
        self.idle = timedelta(seconds=idle_s)
        self.max_age = timedelta(seconds=max_s)
        self._clock = clock

    def _key(self, session_id: str) -> bytes:
        return hmac.new(self._secret, b"seal\0" + session_id.encode("ascii"), hashlib.sha256).digest()

    def _seal(self, session_id: str, token: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._key(session_id)).encrypt(nonce, token.encode(), session_digest(session_id).encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def _unseal(self, session_id: str, sealed: str) -> str | None:
        raw = base64.b64decode(sealed)
        try:
            plain = AESGCM(self._key(session_id)).decrypt(raw[:12], raw[12:], session_digest(session_id).encode())
        except InvalidTag:
            return None
        return plain.decode()

    async def create(self, *, token: str, account: dict[str, Any], replaces: str | None = None) -> str:
        """Start a session for ``account`` (the registry's ``/accounts/me``); returns the new session id.

        ``replaces`` is the session id the browser had before, ended here (rotation at login).
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        row = PortalSession(
            id_digest=session_digest(session_id),
            sealed_token=self._seal(session_id, token),
            account_id=str(account["id"]),
            role=str(account["role"]),
            name=str(account.get("name") or ""),
            company_id=account.get("company_id"),
            institute=account.get("institute"),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.max_age,
        )
        async with self.db.sessions() as session:
            if replaces:
                await session.exec(
                    delete(PortalSession).where(col(PortalSession.id_digest) == session_digest(replaces))
                )  # type: ignore[call-overload]
            session.add(row)
            await session.commit()
        return session_id

    async def load(self, session_id: str | None) -> SessionUser | None:
        """The session's user, or None when there is no such session or it expired (then it is deleted)."""
        if not session_id or len(session_id) > 100:
            return None
        now = self._clock()
        async with self.db.sessions() as session:
            row = await session.get(PortalSession, session_digest(session_id))
            if row is None:
                return None
            token = self._unseal(session_id, row.sealed_token)
            if token is None or now >= row.expires_at or now - row.last_seen_at >= self.idle:
                await session.delete(row)
                await session.commit()
                return None
            if now - row.last_seen_at >= TOUCH_EVERY:
                row.last_seen_at = now
                session.add(row)
                await session.commit()
            return SessionUser(
                session_id=session_id,
                account_id=row.account_id,
                role=row.role,
                name=row.name,
                company_id=row.company_id,
                institute=row.institute,
                token=token,
            )

    async def end(self, session_id: str) -> None:
        """Logout: the row goes, so the id is worthless even if the cookie survives somewhere."""
        async with self.db.sessions() as session:
            await session.exec(delete(PortalSession).where(col(PortalSession.id_digest) == session_digest(session_id)))  # type: ignore[call-overload]
            await session.commit()

    async def purge_expired(self) -> int:
        """Delete sessions past their absolute or idle expiry; returns how many."""
        now = self._clock()
        async with self.db.sessions() as session:
            result = await session.exec(  # type: ignore[call-overload]
                delete(PortalSession).where(
                    (col(PortalSession.expires_at) <= now) | (col(PortalSession.last_seen_at) <= now - self.idle)
                )
            )
            await session.commit()
            return int(result.rowcount or 0)
