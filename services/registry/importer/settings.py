"""The importer's settings: the registry's own (database, Kafka) plus where the portal is."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from services.registry.importer.formats import EDF_PROGRAMME_ID
from services.registry.importer.portal import (
    DEFAULT_DOCUMENT_URL,
    DEFAULT_PROJECTS_URL,
    DOCUMENT_API_KEY,
    PortalConfig,
)
from services.registry.settings import RegistrySettings

_DEFAULTS = {
    "ft_projects_url": DEFAULT_PROJECTS_URL,
    "ft_document_url": DEFAULT_DOCUMENT_URL,
    "ft_document_api_key": DOCUMENT_API_KEY,
}


class ImporterSettings(RegistrySettings):
    """Read from the environment; the CLI overrides some by flag."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    ft_projects_url: str = Field(DEFAULT_PROJECTS_URL, validation_alias="REGISTRY_FT_PROJECTS_URL")
    """topicProjectsList.json, asked with ?topicId={ccm2Id}."""
    ft_document_url: str = Field(DEFAULT_DOCUMENT_URL, validation_alias="REGISTRY_FT_DOCUMENT_URL")
    """The search-api document endpoint; /{programmeId}{projectId} is appended."""
    ft_document_api_key: str = Field(DOCUMENT_API_KEY, validation_alias="REGISTRY_FT_DOCUMENT_API_KEY")
    ft_programme_id: str = Field(EDF_PROGRAMME_ID, validation_alias="REGISTRY_FT_PROGRAMME_ID")
    ft_timeout_s: float = Field(30.0, gt=0, validation_alias="REGISTRY_FT_TIMEOUT")
    ft_max_attempts: int = Field(4, ge=1, validation_alias="REGISTRY_FT_MAX_ATTEMPTS")
    ft_backoff_base_s: float = Field(1.0, ge=0, validation_alias="REGISTRY_FT_BACKOFF_BASE")
    ft_backoff_max_s: float = Field(30.0, ge=0, validation_alias="REGISTRY_FT_BACKOFF_MAX")
    ft_concurrency: int = Field(4, ge=1, le=32, validation_alias="REGISTRY_FT_CONCURRENCY")
    """Requests in flight at once: the portal is a public service, be polite."""

    @field_validator("ft_projects_url", "ft_document_url", "ft_document_api_key", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object, info: ValidationInfo) -> object:
        # An empty variable (compose passes `NAME:` through) means "the real portal".
        if value is None or (isinstance(value, str) and not value.strip()):
            return _DEFAULTS[info.field_name or ""]
        return value

    def portal_config(self) -> PortalConfig:
        return PortalConfig(
            projects_url=self.ft_projects_url,
            document_url=self.ft_document_url,
            document_api_key=self.ft_document_api_key,
            programme_id=self.ft_programme_id,
            timeout_s=self.ft_timeout_s,
            max_attempts=self.ft_max_attempts,
            backoff_base_s=self.ft_backoff_base_s,
            backoff_max_s=self.ft_backoff_max_s,
        )
