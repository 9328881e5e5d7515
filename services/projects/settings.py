from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings, sqlite_url


class ProjectsSettings(ServiceSettings):
    http_port: int = Field(8002, validation_alias=AliasChoices("PROJECTS_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("projects"), validation_alias="PROJECTS_DATABASE_URL")
    stream_poll_interval_s: float = Field(5.0, gt=0, validation_alias="PROJECTS_STREAM_POLL_INTERVAL")
    # An institute follows several projects at once (one stream each); one account cannot hold more.
    stream_max_per_account: int = Field(10, ge=1, validation_alias="PROJECTS_STREAM_MAX_PER_ACCOUNT")
