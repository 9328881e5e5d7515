"""Portal settings (pydantic-settings): where the services are, the session store and its secrets."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.auth import DEV_INTERNAL_TOKEN, MIN_SECRET_LENGTH, secret_problems
from shared.client_address import IPNetwork, parse_proxies
from shared.settings import ServiceSettings, sqlite_url

# Local development and tests only: BONDGENOOT_ENV=production refuses to start with it.
DEV_SECRET_KEY = "bgt-local-portal-secret-do-not-use-in-production"


class PortalSettings(ServiceSettings):
    http_port: int = Field(8000, validation_alias=AliasChoices("PORTAL_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("portal"), validation_alias="PORTAL_DATABASE_URL")

    registry_url: str = Field("http://127.0.0.1:8001", validation_alias="BONDGENOOT_REGISTRY_URL")
    projects_url: str = Field("http://127.0.0.1:8002", validation_alias="BONDGENOOT_PROJECTS_URL")
    calls_url: str = Field("http://127.0.0.1:8003", validation_alias="BONDGENOOT_CALLS_URL")
    matching_url: str = Field("http://127.0.0.1:8004", validation_alias="BONDGENOOT_MATCHING_URL")
    alerts_url: str = Field("http://127.0.0.1:8005", validation_alias="BONDGENOOT_ALERTS_URL")
    consortia_url: str = Field("http://127.0.0.1:8006", validation_alias="BONDGENOOT_CONSORTIA_URL")
    api_timeout_s: float = Field(10.0, gt=0, validation_alias="PORTAL_API_TIMEOUT")

    secret_key: SecretStr | None = Field(None, validation_alias="PORTAL_SECRET_KEY")
    """Keys the CSRF tokens and, with each session id, the sealing of that session's API token."""
    session_idle_s: int = Field(2 * 3600, ge=60, validation_alias="PORTAL_SESSION_IDLE")
    session_max_s: int = Field(12 * 3600, ge=60, validation_alias="PORTAL_SESSION_MAX")
    secure_cookies: bool | None = Field(None, validation_alias="PORTAL_SECURE_COOKIES")
    """Secure (HTTPS-only) cookies; by default on everywhere but BONDGENOOT_ENV=local."""
    internal_token: SecretStr | None = Field(None, validation_alias="BONDGENOOT_INTERNAL_TOKEN")
    """Sent with every service call, so the services believe the browser address the portal forwards
    (failed authentications are counted per browser, not against the portal; docs/security.md)."""
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="BONDGENOOT_TRUSTED_PROXIES")
    """Proxies in front of the portal whose X-Forwarded-For names the browser; none by default."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        parse_proxies(value)  # refuse a typo at start-up
        return value

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> PortalSettings:
        if self.env != "production":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if not secret or hmac.compare_digest(secret.encode(), DEV_SECRET_KEY.encode()):
            raise ValueError("BONDGENOOT_ENV=production needs PORTAL_SECRET_KEY set to a random secret")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"PORTAL_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        problems = secret_problems("BONDGENOOT_INTERNAL_TOKEN", self.internal_token, DEV_INTERNAL_TOKEN)
        if problems:
            raise ValueError("BONDGENOOT_ENV=production: " + "; ".join(problems))
        return self

    @property
    def internal_secret(self) -> str:
        return self.internal_token.get_secret_value() if self.internal_token else DEV_INTERNAL_TOKEN

    @property
    def proxies(self) -> tuple[IPNetwork, ...]:
        return parse_proxies(self.trusted_proxies)

    @property
    def secret(self) -> bytes:
        return (self.secret_key.get_secret_value() if self.secret_key else DEV_SECRET_KEY).encode()

    @property
    def cookies_secure(self) -> bool:
        return self.secure_cookies if self.secure_cookies is not None else self.env != "local"

    def service_urls(self) -> dict[str, str]:
        return {
            "registry": self.registry_url,
            "projects": self.projects_url,
            "calls": self.calls_url,
            "matching": self.matching_url,
            "alerts": self.alerts_url,
            "consortia": self.consortia_url,
        }
