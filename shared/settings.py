"""Settings read from the environment (pydantic-settings); one class per concern."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.limits import DEFAULT_MAX_BODY_BYTES

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / ".data"

Environment = Literal["local", "test", "production"]


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how topics are laid out."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_prefix: str = Field("", validation_alias="TOPIC_PREFIX")
    topic_partitions: int = Field(3, ge=1, validation_alias="TOPIC_PARTITIONS")
    topic_replication: int = Field(1, ge=1, validation_alias="TOPIC_REPLICATION")
    request_timeout_ms: int = Field(10_000, validation_alias="KAFKA_REQUEST_TIMEOUT_MS")
    # SASL/SCRAM per service (docker-compose.yml, docs/security.md); PLAINTEXT when unset.
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM"
    )
    sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list: FastStream takes a string as *one* server, so "a:1,b:2" would fail."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (the prefix isolates tests and tenants)."""
        return f"{self.topic_prefix}{name}"

    def client_security(self) -> dict[str, Any]:
        """aiokafka keyword arguments for the configured security; none for PLAINTEXT."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
        }
        if self.security_protocol == "SASL_SSL":
            options["ssl_context"] = ssl.create_default_context()
        return options


class TelemetrySettings(BaseSettings):
    """Which exporter traces go to: OTLP when an endpoint is set, the console, or nowhere."""

    model_config = SettingsConfigDict(extra="ignore")

    otlp_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_exporter: Literal["otlp", "console", "none"] | None = Field(None, validation_alias="OTEL_TRACES_EXPORTER")

    @property
    def exporter(self) -> Literal["otlp", "console", "none"]:
        if self.traces_exporter is not None:
            return self.traces_exporter
        return "otlp" if self.otlp_endpoint else "none"


class ServiceSettings(BaseSettings):
    """What every service needs; a service subclasses it to add its database URL and its own knobs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    env: Environment = Field("local", validation_alias="BONDGENOOT_ENV")
    http_host: str = Field("127.0.0.1", validation_alias="HTTP_HOST")
    http_port: int = Field(0, validation_alias="HTTP_PORT")
    database_url: str = ""
    public_base_url: str = Field("", validation_alias="PUBLIC_BASE_URL")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    outbox_poll_interval_s: float = Field(0.5, gt=0, validation_alias="OUTBOX_POLL_INTERVAL")
    # How long a frozen relay may hold the outbox lock before PostgreSQL ends its session (shared/outbox.py).
    # A healthy relay waiting longer than this for an unavailable broker loses it too: nothing is marked,
    # the rows are sent again later (duplicates with the same event id, never losses).
    outbox_lock_lease_s: float = Field(30.0, gt=0, validation_alias="OUTBOX_LOCK_LEASE")
    consumer_max_attempts: int = Field(3, ge=1, validation_alias="CONSUMER_MAX_ATTEMPTS")
    consumer_dlq_limit: int = Field(50, ge=1, validation_alias="CONSUMER_DLQ_LIMIT")
    # Records beyond these are dead-lettered unparsed; raise the first with a topic's max.message.bytes.
    consumer_max_record_bytes: int = Field(1_048_588, ge=1024, validation_alias="CONSUMER_MAX_RECORD_BYTES")
    consumer_max_json_depth: int = Field(64, ge=8, le=500, validation_alias="CONSUMER_MAX_JSON_DEPTH")
    # docs/limits.md: bodies over this are refused (413) before they are read into memory.
    http_max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, validation_alias="HTTP_MAX_BODY_BYTES")

    @model_validator(mode="after")
    def _refuse_embedded_database_in_production(self) -> ServiceSettings:
        if self.env == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("BONDGENOOT_ENV=production needs a PostgreSQL database URL, not SQLite")
        return self


def sqlite_url(service: str) -> str:
    """The embedded default: one SQLite file per service under the git-ignored .data/."""
    return f"sqlite+aiosqlite:///{DATA_DIR / (service + '.db')}"
