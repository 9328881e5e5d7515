"""Who may call what: API tokens, principals, the access table and the FastAPI dependencies.

Accounts and their tokens live in the registry (the identity owner). A token is an opaque random
string shown once; the registry stores only its SHA-256. Every service authenticates a request as
follows:

1. No ``Authorization: Bearer`` header: anonymous (allowed on public reads and company
   self-registration only).
2. The admin token (``BONDGENOOT_ADMIN_TOKEN``) is recognised locally by every service: its digest is
   compared in constant time, no call is made.
3. Any other token is resolved by a :class:`TokenResolver`: the registry looks it up in its own
   database (:mod:`services.registry.accounts`); the other services ask the registry's
   ``POST /auth/introspect`` (authenticated with ``BONDGENOOT_INTERNAL_TOKEN``) and cache a positive
   answer for ``AUTH_CACHE_TTL`` seconds (30 by default) — so a revoked or rotated token stops
   working at the registry at once and everywhere else within that TTL. Unknown tokens are not
   cached.
4. A presented token that does not resolve is a *failed authentication*: 401, logged with the client
   address, method and path (never the token), and counted per client IP; after
   ``AUTH_FAILURE_LIMIT`` failures within a minute that IP gets 429 on every token check until the
   minute has passed.

:data:`ACCESS_TABLE` is the authorisation policy as data: the routes apply it with :func:`require`
(or :func:`check` where a service has to look the owner up itself) and
``tests/integration/test_access_control.py`` walks the whole table.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

import httpx
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.client_address import IPNetwork, client_ip, parse_proxies
from shared.ratelimit import SlidingWindowLimiter
from shared.settings import Environment, ServiceSettings

log = logging.getLogger(__name__)

Role = Literal["institute", "company", "integrator", "admin"]
ROLES: tuple[Role, ...] = ("institute", "company", "integrator", "admin")

# Local development only: a production service refuses to start with these (see AuthSettings).
DEV_ADMIN_TOKEN = "bgt-local-admin-token-do-not-use-in-production"
DEV_INTERNAL_TOKEN = "bgt-local-internal-token-do-not-use-in-production"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 512
TOKEN_PREFIX = "bgt_"
INTERNAL_TOKEN_HEADER = "X-Internal-Token"
ADMIN_ACCOUNT_ID = "admin"
FAILURE_WINDOW_S = 60.0


def token_digest(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and cached; the token itself is never kept."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


# --------------------------------------------------------------------------- settings


def secret_problems(name: str, value: SecretStr | None, default: str) -> list[str]:
    """What is wrong with a secret outside local development: unset, the public default, too short."""
    secret = value.get_secret_value() if value is not None else ""
    if not secret:
        return [f"{name} is not set"]
    if hmac.compare_digest(secret.encode(), default.encode()):
        return [f"{name} is the local development default"]
    if len(secret) < MIN_SECRET_LENGTH:
        return [f"{name} is shorter than {MIN_SECRET_LENGTH} characters"]
    return []


class AuthSettings(BaseSettings):
    """Secrets and knobs of authentication; the same variables for every service."""

    # hide_input_in_errors: a refusal must not print the (bad) secrets it was given.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    env: Environment = Field("local", validation_alias="BONDGENOOT_ENV")
    admin_token: SecretStr | None = Field(None, validation_alias="BONDGENOOT_ADMIN_TOKEN")
    internal_token: SecretStr | None = Field(None, validation_alias="BONDGENOOT_INTERNAL_TOKEN")
    registry_url: str = Field("http://127.0.0.1:8001", validation_alias="BONDGENOOT_REGISTRY_URL")
    cache_ttl_s: float = Field(30.0, ge=0, validation_alias="AUTH_CACHE_TTL")
    failure_limit: int = Field(20, ge=1, validation_alias="AUTH_FAILURE_LIMIT")
    introspection_timeout_s: float = Field(5.0, gt=0, validation_alias="AUTH_INTROSPECTION_TIMEOUT")
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias="BONDGENOOT_TRUSTED_PROXIES",
        description="Proxies whose X-Forwarded-For is believed (addresses or networks); none by default",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        parse_proxies(value)  # refuse a typo at start-up, not on the first request
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> AuthSettings:
        if self.env != "production":
            return self
        problems = [
            *secret_problems("BONDGENOOT_ADMIN_TOKEN", self.admin_token, DEV_ADMIN_TOKEN),
            *secret_problems("BONDGENOOT_INTERNAL_TOKEN", self.internal_token, DEV_INTERNAL_TOKEN),
        ]
        if not problems and self.admin_secret == self.internal_secret:
            problems.append("BONDGENOOT_ADMIN_TOKEN and BONDGENOOT_INTERNAL_TOKEN must differ")
        if problems:
            raise ValueError(
                "BONDGENOOT_ENV=production refuses to start: "
                + "; ".join(problems)
                + ". Set each to its own random secret, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (see docs/security.md)"
            )
        return self

    @property
    def admin_secret(self) -> str:
        return self.admin_token.get_secret_value() if self.admin_token else DEV_ADMIN_TOKEN

    @property
    def internal_secret(self) -> str:
        return self.internal_token.get_secret_value() if self.internal_token else DEV_INTERNAL_TOKEN


# --------------------------------------------------------------------------- principals


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an account, its role and its organisation."""

    account_id: str
    role: Role
    name: str = ""
    company_id: str | None = None
    """For company accounts: the registry id of the company."""
    institute: str | None = None
    """For institute accounts: the institute's name, as projects carry it."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def owns_company(self, company_id: str) -> bool:
        return self.role == "company" and self.company_id is not None and self.company_id == company_id.lower()

    def owns_institute(self, institute: str | None) -> bool:
        return self.role == "institute" and self.institute is not None and self.institute == institute

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "role": self.role,
            "name": self.name,
            "company_id": self.company_id,
            "institute": self.institute,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Principal:
        role = data["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return cls(
            account_id=str(data["account_id"]),
            role=role,
            name=str(data.get("name") or ""),
            company_id=data.get("company_id"),
            institute=data.get("institute"),
        )


ADMIN = Principal(account_id=ADMIN_ACCOUNT_ID, role="admin", name="platform administrator (BONDGENOOT_ADMIN_TOKEN)")


# --------------------------------------------------------------------------- the access table


class Access(StrEnum):
    """Who may call a route. Admins may call everything; "own" means the caller's organisation."""

    PUBLIC = "public"
    """Anyone, also without a token; contact details are shown to the owner and admins only."""
    REGISTER = "register"
    """Anyone: company self-registration (creates the company and its account, returns its token)."""
    AUTHENTICATED = "authenticated"
    """Any valid token."""
    ADMIN = "admin"
    """Admins only."""
    INSTITUTE = "institute"
    """Institutes (and admins)."""
    OWN_COMPANY = "own-company"
    """The company itself (the path's company id) and admins."""
    OWN_PROJECT = "own-project"
    """The institute that posted the project and admins."""
    PROJECT_INSIGHT = "project-insight"
    """The institute that posted the project, integrators and admins (suggestions.v1 is public)."""
    OWN_ACCOUNT = "own-account"
    """The account itself (the path's account id) and admins."""
    ORGANISATION = "organisation"
    """Institutes and companies (and admins): organisations that can build a consortium."""
    CONSORTIUM_LEAD = "consortium-lead"
    """The organisation leading the consortium draft, and admins."""
    CONSORTIUM_MEMBER = "consortium-member"
    """The lead and the accepted members of the consortium, and admins (not pending or declined invitees)."""
    INVITEE = "invitee"
    """The company the invitation is addressed to, and admins."""
    INTERNAL = "internal"
    """Services only: ``X-Internal-Token: $BONDGENOOT_INTERNAL_TOKEN``; no user token, not even admin."""


Caller = Literal["anonymous", "institute", "company", "integrator", "admin"]
CALLERS: tuple[Caller, ...] = ("anonymous", "institute", "company", "integrator", "admin")


def allowed(access: Access, caller: Caller, *, own: bool) -> bool:
    """Whether ``caller`` may call a route with ``access`` on its own (``own``) or another's resource."""
    if access is Access.INTERNAL:
        return False
    if access in (Access.PUBLIC, Access.REGISTER):
        return True
    if caller == "anonymous":
        return False
    if caller == "admin" or access is Access.AUTHENTICATED:
        return True
    match access:
        case Access.INSTITUTE:
            return caller == "institute"
        case Access.OWN_COMPANY:
            return caller == "company" and own
        case Access.OWN_PROJECT:
            return caller == "institute" and own
        case Access.PROJECT_INSIGHT:
            return caller == "integrator" or (caller == "institute" and own)
        case Access.OWN_ACCOUNT:
            return own
        case Access.ORGANISATION:
            return caller in ("institute", "company")
        case Access.CONSORTIUM_LEAD | Access.CONSORTIUM_MEMBER:
            return caller in ("institute", "company") and own
        case Access.INVITEE:
            return caller == "company" and own
    return False


OWNER_LOOKUP: dict[Access, tuple[Caller, ...]] = {
    Access.OWN_PROJECT: ("institute",),
    Access.PROJECT_INSIGHT: ("institute",),
    Access.CONSORTIUM_LEAD: ("institute", "company"),
    Access.CONSORTIUM_MEMBER: ("institute", "company"),
    Access.INVITEE: ("company",),
}
"""Accesses whose "own" needs the resource looked up, and for which callers (the others are refused anyway)."""


@dataclass(frozen=True)
class Endpoint:
    service: str
    method: str
    path: str
    access: Access
    note: str = ""


SERVICES = ("registry", "projects", "calls", "matching", "alerts", "consortia")
"""Every service; each serves the operator endpoints of shared/ops.py."""

ACCESS_TABLE: tuple[Endpoint, ...] = (
    # registry: companies and accounts
    Endpoint("registry", "POST", "/companies", Access.REGISTER, "self-registration; returns `api_token` once"),
    Endpoint("registry", "GET", "/companies", Access.PUBLIC, "`contact_email` only on the caller's own company"),
    Endpoint("registry", "GET", "/companies/{company_id}", Access.PUBLIC, "`contact_email` for owner and admins"),
    Endpoint("registry", "PATCH", "/companies/{company_id}", Access.OWN_COMPANY),
    Endpoint("registry", "DELETE", "/companies/{company_id}", Access.OWN_COMPANY, "also deletes its account"),
    Endpoint("registry", "POST", "/accounts", Access.ADMIN, "institute, integrator, admin or company accounts"),
    Endpoint("registry", "GET", "/accounts", Access.ADMIN),
    Endpoint("registry", "GET", "/accounts/me", Access.AUTHENTICATED, "who am I"),
    Endpoint("registry", "GET", "/accounts/{account_id}", Access.OWN_ACCOUNT),
    Endpoint("registry", "POST", "/accounts/{account_id}/tokens/rotate", Access.OWN_ACCOUNT, "new token, old ones die"),
    Endpoint("registry", "DELETE", "/accounts/{account_id}/tokens", Access.OWN_ACCOUNT, "revokes every token"),
    Endpoint("registry", "POST", "/auth/introspect", Access.INTERNAL, "token → principal, for the other services"),
    # projects
    Endpoint("projects", "POST", "/projects", Access.INSTITUTE, "an institute posts under its own name only"),
    Endpoint("projects", "GET", "/projects", Access.PUBLIC, "`contact_email` only on the caller's own projects"),
    Endpoint("projects", "GET", "/projects/{project_id}", Access.PUBLIC, "`contact_email` for owner and admins"),
    Endpoint("projects", "PATCH", "/projects/{project_id}", Access.OWN_PROJECT),
    Endpoint("projects", "POST", "/projects/{project_id}/close", Access.OWN_PROJECT),
    Endpoint("projects", "GET", "/projects/{project_id}/suggestions", Access.PROJECT_INSIGHT),
    Endpoint("projects", "GET", "/projects/{project_id}/consortia", Access.PROJECT_INSIGHT),
    Endpoint(
        "projects", "GET", "/projects/{project_id}/suggestions/stream", Access.PROJECT_INSIGHT, "Server-Sent Events"
    ),
    # calls
    Endpoint("calls", "POST", "/calls/poll", Access.ADMIN, "an operator action"),
    Endpoint("calls", "GET", "/calls", Access.PUBLIC),
    Endpoint("calls", "GET", "/calls/{call_id}", Access.PUBLIC),
    Endpoint("calls", "GET", "/calls/{call_id}/suggestions", Access.AUTHENTICATED),
    # matching
    Endpoint("matching", "GET", "/suggestions/project/{target_id}", Access.PROJECT_INSIGHT),
    Endpoint("matching", "GET", "/consortia/project/{target_id}", Access.PROJECT_INSIGHT),
    Endpoint("matching", "GET", "/suggestions/call/{target_id}", Access.AUTHENTICATED),
    Endpoint("matching", "GET", "/consortia/call/{target_id}", Access.AUTHENTICATED),
    # alerts
    Endpoint("alerts", "PUT", "/subscriptions/{company_id}", Access.OWN_COMPANY),
    Endpoint("alerts", "GET", "/subscriptions/{company_id}", Access.OWN_COMPANY),
    Endpoint("alerts", "GET", "/companies/{company_id}/alerts", Access.OWN_COMPANY),
    Endpoint("alerts", "GET", "/companies/{company_id}/alerts/{alert_id}", Access.OWN_COMPANY),
    Endpoint("alerts", "GET", "/companies/{company_id}/alerts/stream", Access.OWN_COMPANY, "Server-Sent Events"),
    Endpoint("alerts", "GET", "/subscriptions/{company_id}/channels", Access.OWN_COMPANY),
    Endpoint("alerts", "PUT", "/subscriptions/{company_id}/channels/email", Access.OWN_COMPANY),
    Endpoint("alerts", "PUT", "/subscriptions/{company_id}/channels/webhook", Access.OWN_COMPANY, "secret shown once"),
    Endpoint("alerts", "DELETE", "/subscriptions/{company_id}/channels/{channel}", Access.OWN_COMPANY),
    Endpoint(
        "alerts", "POST", "/subscriptions/{company_id}/channels/webhook/test", Access.OWN_COMPANY, "one signed POST"
    ),
    Endpoint("alerts", "GET", "/subscriptions/{company_id}/deliveries", Access.OWN_COMPANY),
    Endpoint("alerts", "GET", "/deliveries/{delivery_id}", Access.OWN_COMPANY, "the delivery's company"),
    Endpoint("alerts", "POST", "/deliveries/{delivery_id}/redeliver", Access.OWN_COMPANY, "the delivery's company"),
    # consortia
    Endpoint("consortia", "POST", "/consortia", Access.ORGANISATION, "the caller's organisation becomes the lead"),
    Endpoint("consortia", "GET", "/consortia", Access.ORGANISATION, "the caller's own drafts (lead or member)"),
    Endpoint("consortia", "GET", "/consortia/{consortium_id}", Access.CONSORTIUM_MEMBER, "roster, rules, gaps"),
    Endpoint("consortia", "POST", "/consortia/{consortium_id}/invitations", Access.CONSORTIUM_LEAD),
    Endpoint(
        "consortia",
        "DELETE",
        "/consortia/{consortium_id}/members/{company_id}",
        Access.CONSORTIUM_MEMBER,
        "the lead removes a member, or a member leaves",
    ),
    Endpoint("consortia", "POST", "/consortia/{consortium_id}/outcome", Access.CONSORTIUM_LEAD),
    Endpoint("consortia", "GET", "/invitations/{invitation_id}", Access.INVITEE, "what the invitee is asked"),
    Endpoint("consortia", "POST", "/invitations/{invitation_id}/accept", Access.INVITEE),
    Endpoint("consortia", "POST", "/invitations/{invitation_id}/decline", Access.INVITEE),
    Endpoint("consortia", "DELETE", "/invitations/{invitation_id}", Access.CONSORTIUM_LEAD, "withdraw (pending only)"),
    Endpoint("consortia", "GET", "/companies/{company_id}/invitations", Access.OWN_COMPANY),
    Endpoint("consortia", "GET", "/projects/{project_id}/funnel", Access.OWN_PROJECT, "suggested → … → funded"),
    Endpoint("consortia", "GET", "/companies/{company_id}/funnel", Access.OWN_COMPANY, "suggested → … → funded"),
    # every service (shared/ops.py)
    *(
        Endpoint(service, "GET", "/ops/dead-letters", Access.ADMIN, "records in the DLQs of what it consumes")
        for service in SERVICES
    ),
    *(
        Endpoint(service, "GET", "/ops/parked-events", Access.ADMIN, "events its consumers parked")
        for service in SERVICES
    ),
    *(
        Endpoint(
            service, "POST", "/ops/parked-events/{parked_id}/discard", Access.ADMIN, "to the DLQ; its subject moves on"
        )
        for service in SERVICES
    ),
    # every service: its outbox rows the broker refused for good (shared.outbox_admin)
    *(
        Endpoint(service, method, path, Access.ADMIN, note)
        for service in ("registry", "projects", "calls", "matching", "alerts", "consortia")
        for method, path, note in (
            ("GET", "/admin/outbox/parked", "outbox rows the broker refused for good"),
            ("POST", "/admin/outbox/parked/retry", "try every parked row again"),
            ("POST", "/admin/outbox/parked/{outbox_id}/retry", "try one parked row again"),
        )
    ),
)
"""Every route that is not open. Open (no token ever needed): ``OPEN_PATHS`` and ``OPEN_PREFIXES``."""

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/asyncapi", "/contracts/", "/unsubscribe/", "/confirm-email/")


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def render_access_table() -> str:
    """The access table as Markdown (docs/security.md embeds it; a unit test keeps it in sync)."""
    header = "| service | method | path | who | note |\n|---|---|---|---|---|"
    rows = [f"| {e.service} | {e.method} | `{e.path}` | {e.access.value} | {e.note} |" for e in ACCESS_TABLE]
    return "\n".join([header, *rows])


# --------------------------------------------------------------------------- resolving tokens


class AuthUnavailable(RuntimeError):
    """The token could not be checked now (the registry did not answer): 503, not 401."""


class TokenResolver(Protocol):
    async def resolve(self, token: str, *, fresh: bool = False) -> Principal | None:
        """The principal of a valid token; None for an unknown, revoked or malformed one.

        ``fresh`` skips any cache: long-lived responses re-check their token with it.
        """
        ...

    async def aclose(self) -> None: ...


class RegistryIntrospection:
    """Resolves tokens through the registry's ``POST /auth/introspect``, caching positive answers.

    The cache is keyed by the token's digest, holds at most ``max_entries`` principals and forgets
    each after ``ttl_s``: that is how long a revoked token may still work at this service.
    """

    def __init__(
        self,
        registry_url: str,
        internal_token: str,
        *,
        ttl_s: float = 30.0,
        timeout_s: float = 5.0,
        max_entries: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = registry_url.rstrip("/") + "/auth/introspect"
        self._internal_token = internal_token
        self.ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._transport = transport
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self.calls = 0

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, transport=self._transport, trust_env=False)
        return self._client

    def forget(self) -> None:
        self._cache.clear()

    async def resolve(self, token: str, *, fresh: bool = False) -> Principal | None:
        key = token_digest(token)
        now = self._clock()
        hit = None if fresh else self._cache.get(key)
        if hit is not None:
            expires, principal = hit
            if now < expires:
                self._cache.move_to_end(key)
                return principal
            del self._cache[key]
        self.calls += 1
        try:
            response = await self._http().post(
                self.url, json={"token": token}, headers={INTERNAL_TOKEN_HEADER: self._internal_token}
            )
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"registry introspection failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise AuthUnavailable(f"registry introspection answered HTTP {response.status_code}")
        body = response.json()
        if not body.get("active"):
            self._cache.pop(key, None)
            return None
        principal = Principal.from_json(body)
        if self.ttl_s > 0:
            self._cache[key] = (now + self.ttl_s, principal)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return principal

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# --------------------------------------------------------------------------- failed-authentication limit


# One sliding window of failures per client address (shared.ratelimit).
FailureLimiter = SlidingWindowLimiter


# --------------------------------------------------------------------------- the guard


class AuthGuard:
    """Authenticates requests for one service; lives on ``app.state.auth`` (see create_app)."""

    def __init__(
        self,
        *,
        admin_token: str,
        internal_token: str,
        resolver: TokenResolver,
        failure_limit: int = 20,
        trusted_proxies: tuple[IPNetwork, ...] = (),
        token_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin_digest = token_digest(admin_token)
        self._internal_digest = token_digest(internal_token)
        self.resolver = resolver
        self.limiter = FailureLimiter(failure_limit, window_s=FAILURE_WINDOW_S, clock=clock)
        self.trusted_proxies = trusted_proxies
        self.token_ttl_s = token_ttl_s
        """How long a token accepted here may stay accepted without asking again (AUTH_CACHE_TTL)."""

    @classmethod
    def for_service(
        cls, settings: ServiceSettings, *, resolver: TokenResolver | None = None, auth: AuthSettings | None = None
    ) -> AuthGuard:
        """The guard of a service: secrets from the environment, tokens resolved by ``resolver``.

        Without a resolver, tokens are introspected at the registry. Raises (the service does not
        start) when ``BONDGENOOT_ENV=production`` and a secret is unset or a development default.
        """
        auth = auth or AuthSettings(env=settings.env)
        resolver = resolver or RegistryIntrospection(
            auth.registry_url, auth.internal_secret, ttl_s=auth.cache_ttl_s, timeout_s=auth.introspection_timeout_s
        )
        return cls(
            admin_token=auth.admin_secret,
            internal_token=auth.internal_secret,
            resolver=resolver,
            failure_limit=auth.failure_limit,
            trusted_proxies=parse_proxies(auth.trusted_proxies),
            token_ttl_s=auth.cache_ttl_s,
        )

    def client_ip(self, request: Request) -> str:
        """The client's address: the peer, or what a trusted proxy says (shared.client_address).

        A peer presenting the internal secret is a platform component acting for a browser (the
        portal): the address it forwards is the client, so that client's failures are counted
        against the client and never against the component every user shares.
        """
        return client_ip(request, self.trusted_proxies, peer_vouched=self.is_internal_call(request))

    def is_internal_call(self, request: Request) -> bool:
        """Whether the request carries the internal service secret (constant-time)."""
        presented = request.headers.get(INTERNAL_TOKEN_HEADER)
        return presented is not None and digests_equal(token_digest(presented), self._internal_digest)

    def _refuse_if_limited(self, request: Request) -> None:
        ip = self.client_ip(request)
        wait = self.limiter.retry_after(ip)
        if wait is not None:
            log.warning(
                "authentication refused (too many failures) from %s: %s %s",
                ip,
                request.method,
                request.url.path,
            )
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many failed authentications from this address; try again later",
                headers={"Retry-After": str(int(wait) + 1)},
            )

    def _fail(self, request: Request, reason: str, *, challenge: str = "Bearer") -> HTTPException:
        ip = self.client_ip(request)
        self.limiter.record(ip)
        log.warning("authentication failed from %s: %s %s (%s)", ip, request.method, request.url.path, reason)
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", headers={"WWW-Authenticate": challenge}
        )

    async def authenticate(self, request: Request, token: str | None) -> Principal | None:
        """The principal of a presented token; None without one; 401/429/503 when it cannot be accepted."""
        if token is None:
            return None
        self._refuse_if_limited(request)
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise self._fail(request, "malformed token")
        if digests_equal(token_digest(token), self._admin_digest):
            return ADMIN
        try:
            principal = await self.resolver.resolve(token)
        except AuthUnavailable as exc:
            log.error("cannot check a token for %s %s: %s", request.method, request.url.path, exc)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "cannot verify the token right now; try again shortly",
                headers={"Retry-After": "5"},
            ) from exc
        if principal is None:
            raise self._fail(request, "unknown or revoked token")
        return principal

    def check_internal(self, request: Request, presented: str | None) -> None:
        """Accept only the internal service secret (constant-time); 401 and a counted failure otherwise.

        The secret is checked *before* the failure limit: the services' own calls come from addresses
        that clients may share (one host, a NAT, a webhook aimed here), and a limit that clients can
        fill must never lock the platform out of itself.
        """
        if presented is not None and digests_equal(token_digest(presented), self._internal_digest):
            return
        self._refuse_if_limited(request)
        raise self._fail(request, "bad internal token", challenge=INTERNAL_TOKEN_HEADER)

    async def still_valid(self, token: str, principal: Principal) -> bool:
        """Whether a token accepted earlier still belongs to ``principal``, asked afresh (no cache).

        For long-lived responses (the live alert stream) that re-check every ``token_ttl_s``. A token
        that stopped working is not a failed authentication: nothing is counted. Raises
        :class:`AuthUnavailable` when the registry cannot tell.
        """
        if digests_equal(token_digest(token), self._admin_digest):
            return principal.is_admin
        return await self.resolver.resolve(token, fresh=True) == principal

    async def aclose(self) -> None:
        await self.resolver.aclose()


def guard(request: Request) -> AuthGuard:
    auth = getattr(request.app.state, "auth", None)
    if not isinstance(auth, AuthGuard):  # fail closed: a service without a guard serves no private data
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "authentication is not configured")
    return auth


# --------------------------------------------------------------------------- FastAPI dependencies

_bearer = HTTPBearer(auto_error=False, description="An account's API token (or the admin token)")
_internal = APIKeyHeader(name=INTERNAL_TOKEN_HEADER, auto_error=False, description="The internal service secret")


async def optional_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    """The caller, or None when no token was sent; a token that was sent must be valid (else 401)."""
    return await guard(request).authenticate(request, credentials.credentials if credentials else None)


async def presented_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The bearer token as sent (for a long-lived response that has to re-check it later)."""
    return credentials.credentials if credentials else None


PresentedToken = Annotated[str | None, Depends(presented_token)]


def token_recheck(
    request: Request, principal: Principal | None, token: str | None
) -> Callable[[], Awaitable[str | None]]:
    """For a long-lived response: is the token that opened it still valid and still this caller's?

    Asked afresh at the registry (no cache); None to go on, or the reason to stop. When the registry
    cannot answer, the response stops too: the client reconnects and is authenticated again.
    """
    auth = guard(request)

    async def still_allowed() -> str | None:
        try:
            if principal is None or token is None or not await auth.still_valid(token, principal):
                return "the token was revoked or no longer belongs to this account"
        except AuthUnavailable:
            return "the token cannot be re-checked right now; reconnect"
        return None

    return still_allowed


async def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """The caller; 401 without a token."""
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "this needs an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


async def internal_caller(request: Request, token: Annotated[str | None, Depends(_internal)]) -> None:
    guard(request).check_internal(request, token)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

FORBIDDEN = "not allowed for this account"


def forbidden(detail: str = FORBIDDEN) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail)


def check(access: Access, principal: Principal | None, *, owns: bool | None = None) -> None:
    """Raise 401/403/404 unless ``principal`` may call a route with ``access``.

    ``owns`` says whether the caller's organisation owns the resource (True/False), or None when the
    resource does not exist — then 404 for whoever could otherwise have been allowed.
    """
    if access in (Access.PUBLIC, Access.REGISTER):
        return
    if access is Access.INTERNAL:
        raise forbidden("services only")
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "this needs an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    caller: Caller = principal.role
    ownership_matters = caller in OWNER_LOOKUP.get(access, ())
    if ownership_matters and owns is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if not allowed(access, caller, own=bool(owns)):
        raise forbidden()


Owner = Callable[[Request, Principal], Awaitable[bool | None]]
"""Looks up whether the principal's organisation owns the route's resource (None: it does not exist)."""


def require(
    access: Access = Access.AUTHENTICATED, *, param: str | None = None, owner: Owner | None = None
) -> Callable[..., Awaitable[Principal | None]]:
    """A dependency enforcing ``access`` and returning the caller (None only on public routes).

    ``Access.OWN_COMPANY`` compares the path parameter ``param`` (default ``company_id``) with the
    company account's company; ``Access.OWN_ACCOUNT`` compares ``param`` (default ``account_id``) with
    the account. The accesses in :data:`OWNER_LOOKUP` need ``owner``. Use it as
    ``dependencies=[Depends(require(Access.OWN_COMPANY))]`` or
    ``principal: Annotated[Principal, Depends(require(Access.ADMIN))]``.
    """
    if access in OWNER_LOOKUP and owner is None:
        raise ValueError(f"{access} needs an owner lookup")
    if access is Access.INTERNAL:
        raise ValueError("use internal_caller for internal routes")
    path_param = param or {"own-company": "company_id", "own-account": "account_id"}.get(access.value)

    async def dependency(request: Request, principal: OptionalPrincipal) -> Principal | None:
        owns: bool | None = None
        if principal is not None and not principal.is_admin:
            if access is Access.OWN_COMPANY and path_param:
                owns = principal.owns_company(str(request.path_params.get(path_param, "")))
            elif access is Access.OWN_ACCOUNT and path_param:
                value = str(request.path_params.get(path_param, ""))
                owns = hmac.compare_digest(value.encode(), principal.account_id.encode())
            elif owner is not None and principal.role in OWNER_LOOKUP.get(access, ()):
                owns = await owner(request, principal)
        check(access, principal, owns=owns)
        return principal

    dependency.__name__ = f"require_{access.value.replace('-', '_')}"
    return dependency


async def close_when_stopped(auth: AuthGuard, stop: asyncio.Event) -> None:
    """A runtime background task: release the guard's HTTP client when the service stops."""
    await stop.wait()
    await auth.aclose()
