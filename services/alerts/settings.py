from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings, sqlite_url


class AlertsSettings(ServiceSettings):
    http_port: int = Field(8005, validation_alias=AliasChoices("ALERTS_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("alerts"), validation_alias="ALERTS_DATABASE_URL")
