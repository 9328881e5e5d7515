from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.calls.domain.portal import DEFAULT_ENDPOINT, PortalConfig
from shared.settings import ServiceSettings, sqlite_url


class CallsSettings(ServiceSettings):
    """The call watcher: where the portal is, how often to poll it and how hard to retry it."""

    # Fields may be given by name as well as by their environment alias (tests and scripts do).
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    http_port: int = Field(8003, validation_alias=AliasChoices("CALLS_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("calls"), validation_alias="CALLS_DATABASE_URL")
    ft_search_url: str = Field(DEFAULT_ENDPOINT, validation_alias="CALLS_FT_SEARCH_URL")
    poll_interval_s: float = Field(900.0, gt=0, validation_alias="CALLS_POLL_INTERVAL")
    """Seconds between two scheduled polls."""
    poll_on_start: bool = Field(True, validation_alias="CALLS_POLL_ON_START")
    poll_retry_s: float = Field(60.0, gt=0, validation_alias="CALLS_POLL_RETRY_INTERVAL")
    """First wait after a failed scheduled poll; doubles per failure, capped at poll_interval_s."""

    portal_api_key: str = Field("SEDIA", validation_alias="CALLS_PORTAL_API_KEY")
    portal_page_size: int = Field(100, ge=1, le=1000, validation_alias="CALLS_PORTAL_PAGE_SIZE")
    portal_max_pages: int = Field(100, ge=1, validation_alias="CALLS_PORTAL_MAX_PAGES")
    portal_timeout_s: float = Field(30.0, gt=0, validation_alias="CALLS_PORTAL_TIMEOUT")
    portal_max_attempts: int = Field(5, ge=1, validation_alias="CALLS_PORTAL_MAX_ATTEMPTS")
    portal_backoff_base_s: float = Field(1.0, ge=0, validation_alias="CALLS_PORTAL_BACKOFF_BASE")
    portal_backoff_max_s: float = Field(60.0, ge=0, validation_alias="CALLS_PORTAL_BACKOFF_MAX")
    portal_retry_after_max_s: float = Field(300.0, ge=0, validation_alias="CALLS_PORTAL_RETRY_AFTER_MAX")

    @field_validator("ft_search_url", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object) -> object:
        # docker compose passes `CALLS_FT_SEARCH_URL:` through; an empty value means "the real portal".
        if value is None or (isinstance(value, str) and not value.strip()):
            return DEFAULT_ENDPOINT
        return value

    def portal_config(self) -> PortalConfig:
        return PortalConfig(
            endpoint=self.ft_search_url,
            api_key=self.portal_api_key,
            page_size=self.portal_page_size,
            max_pages=self.portal_max_pages,
            timeout_s=self.portal_timeout_s,
            max_attempts=self.portal_max_attempts,
            backoff_base_s=self.portal_backoff_base_s,
            backoff_max_s=self.portal_backoff_max_s,
            retry_after_max_s=self.portal_retry_after_max_s,
        )
