from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings, sqlite_url


class ConsortiaSettings(ServiceSettings):
    http_port: int = Field(8006, validation_alias=AliasChoices("CONSORTIA_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("consortia"), validation_alias="CONSORTIA_DATABASE_URL")
    gap_candidates: int = Field(3, ge=1, le=20, validation_alias="CONSORTIA_GAP_CANDIDATES")
