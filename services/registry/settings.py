from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings, sqlite_url


class RegistrySettings(ServiceSettings):
    http_port: int = Field(8001, validation_alias=AliasChoices("REGISTRY_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("registry"), validation_alias="REGISTRY_DATABASE_URL")
