from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings, sqlite_url


class MatchingSettings(ServiceSettings):
    http_port: int = Field(8004, validation_alias=AliasChoices("MATCHING_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("matching"), validation_alias="MATCHING_DATABASE_URL")
    top_n: int = Field(20, ge=1, le=200, validation_alias="MATCHING_TOP_N")
