from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.auth import secret_problems
from shared.settings import ServiceSettings, sqlite_url

SmtpTls = Literal["starttls", "implicit", "none"]

# Only for local runs and tests: outside local mode the service refuses to start with it (or without one).
DEV_TOKEN_SECRET = "bondgenoot-local-only-unsubscribe-key"


class AlertsSettings(ServiceSettings):
    # A refused secret must not be printed in the error.
    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "hide_input_in_errors": True})

    http_port: int = Field(8005, validation_alias=AliasChoices("ALERTS_HTTP_PORT", "HTTP_PORT"))
    database_url: str = Field(sqlite_url("alerts"), validation_alias="ALERTS_DATABASE_URL")

    # --- delivery channels (see services/alerts/README.md) ---
    smtp_host: str = Field("localhost", validation_alias="ALERTS_SMTP_HOST")
    smtp_port: int = Field(587, ge=1, le=65535, validation_alias="ALERTS_SMTP_PORT")
    smtp_tls: SmtpTls = Field("starttls", validation_alias="ALERTS_SMTP_TLS")
    smtp_username: str | None = Field(None, validation_alias="ALERTS_SMTP_USERNAME")
    smtp_password: str | None = Field(None, validation_alias="ALERTS_SMTP_PASSWORD")
    smtp_from: str = Field("Bondgenoot alerts <alerts@bondgenoot.local>", validation_alias="ALERTS_SMTP_FROM")
    smtp_timeout_s: float = Field(15.0, gt=0, validation_alias="ALERTS_SMTP_TIMEOUT")
    smtp_validate_certs: bool = Field(True, validation_alias="ALERTS_SMTP_VALIDATE_CERTS")

    token_secret: SecretStr | None = Field(
        None, validation_alias="ALERTS_TOKEN_SECRET", description="Signs unsubscribe and confirmation links"
    )
    confirmation_ttl_s: float = Field(
        3 * 24 * 3600.0,
        gt=0,
        validation_alias="ALERTS_CONFIRMATION_TTL",
        description="Seconds a confirmation link works",
    )
    confirmation_limit: int = Field(
        5,
        ge=1,
        validation_alias="ALERTS_CONFIRMATION_LIMIT",
        description="Confirmation e-mails an account can cause per hour (each to an address it names)",
    )
    confirmation_poll_interval_s: float = Field(10.0, gt=0, validation_alias="ALERTS_CONFIRMATION_POLL_INTERVAL")
    unsubscribe_base_url: str = Field(
        "",
        validation_alias="ALERTS_UNSUBSCRIBE_BASE_URL",
        description="Where /unsubscribe/{token} of this service is reachable; PUBLIC_BASE_URL when empty",
    )

    webhook_timeout_s: float = Field(10.0, gt=0, validation_alias="ALERTS_WEBHOOK_TIMEOUT")
    webhook_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias="ALERTS_WEBHOOK_ALLOW",
        description="Hosts and networks webhooks may reach although they are not public (local development, "
        "tests): e.g. '127.0.0.1,receiver.lan,10.0.0.0/8'. Empty: public addresses only",
    )
    redeliver_limit: int = Field(
        30,
        ge=1,
        validation_alias="ALERTS_REDELIVER_LIMIT",
        description="Sends on demand (redeliveries and webhook tests) per account per minute",
    )
    delivery_workers: int = Field(
        3,
        ge=1,
        le=64,
        validation_alias="ALERTS_DELIVERY_WORKERS",
        description="Consumers of alerts.deliveries.v1 per process; more than TOPIC_PARTITIONS idle",
    )
    # 1 by default (as before); raising it is measured in services/alerts/README.md.
    suggestion_workers: int = Field(
        1,
        ge=1,
        le=64,
        validation_alias="ALERTS_SUGGESTION_WORKERS",
        description="Consumers of suggestions.v1 per process (alerts raised in parallel per partition)",
    )
    retry_delays_s: Annotated[tuple[float, ...], NoDecode] = Field(
        (15.0, 60.0, 240.0), validation_alias="ALERTS_RETRY_DELAYS"
    )
    retry_jitter: float = Field(0.2, ge=0.0, lt=1.0, validation_alias="ALERTS_RETRY_JITTER")

    digest_hour_utc: int = Field(7, ge=0, le=23, validation_alias="ALERTS_DIGEST_HOUR")
    digest_poll_interval_s: float = Field(60.0, gt=0, validation_alias="ALERTS_DIGEST_POLL_INTERVAL")

    stream_poll_interval_s: float = Field(1.0, gt=0, validation_alias="ALERTS_STREAM_POLL_INTERVAL")
    stream_max_per_account: int = Field(
        5, ge=1, validation_alias="ALERTS_STREAM_MAX_PER_ACCOUNT", description="Open live streams per account"
    )

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _parse_allow(cls, value: Any) -> Any:
        """Accept "127.0.0.1, receiver.lan" (the environment) as well as a list."""
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        """Accept "15,60,240" (the environment) as well as a list."""
        if isinstance(value, str):
            value = value.strip().strip("[]")
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("retry_delays_s")
    @classmethod
    def _check_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not 1 <= len(value) <= 10 or any(v < 0 for v in value):
            raise ValueError("ALERTS_RETRY_DELAYS needs 1 to 10 non-negative delays in seconds")
        return value

    @model_validator(mode="after")
    def _no_public_token_secret_outside_local_mode(self) -> AlertsSettings:
        """Outside local mode the key that signs e-mail links must be set, secret and strong (as shared.auth
        demands of the admin and internal tokens); the error never shows the value."""
        if self.local_mode:
            return self
        problems = secret_problems("ALERTS_TOKEN_SECRET", self.token_secret, DEV_TOKEN_SECRET)
        if problems:
            raise ValueError(
                f"BONDGENOOT_ENV={self.env} refuses to start: {'; '.join(problems)}. It signs unsubscribe and "
                "confirmation links: set it to its own random secret (docs/security.md)"
            )
        return self

    @property
    def local_mode(self) -> bool:
        """Local development and tests (not production): plain-http webhooks and development secrets allowed."""
        return self.env != "production"

    @property
    def unsubscribe_key(self) -> bytes:
        """The key of every signed e-mail link (unsubscribe, confirmation)."""
        return (self.token_secret.get_secret_value() if self.token_secret else DEV_TOKEN_SECRET).encode()

    @property
    def public_url(self) -> str:
        """The base of links in e-mails (targets); PUBLIC_BASE_URL, else this service's own address."""
        return (self.public_base_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    @property
    def unsubscribe_url(self) -> str:
        return (self.unsubscribe_base_url or self.public_url).rstrip("/")
