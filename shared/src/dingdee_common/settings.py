"""Settings blocks shared by every service (DESIGN §7).

Each service composes these blocks into one ``BaseSettings`` class with the ``DINGDEE_`` prefix and
``__`` as the nested delimiter, e.g. ``DINGDEE_KAFKA__BOOTSTRAP_SERVERS``. Only a service's
``__main__`` builds the settings object; every component receives it explicitly.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "FloodGuardSettings",
    "HttpServerSettings",
    "KafkaSettings",
    "RetrySettings",
    "ServiceSettings",
    "TelemetrySettings",
    "masked",
]


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Block):
    """How to reach the Kafka cluster (Tansu locally, Apache Kafka / Strimzi in production)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = "dingdee."
    partitions: int = Field(
        default=3, ge=1, description="partitions for data topics at provisioning"
    )
    replication_factor: int = Field(default=1, ge=1)
    enable_idempotence: bool = Field(
        default=False,
        description="Kafka idempotent producer; Tansu has none, Apache Kafka should set it true",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=60_000,
        description=(
            "how long the broker may hold a consumer's fetch waiting for new records. A consumer "
            "has one fetch in flight per broker, so while one waits on caught-up partitions, "
            "partitions with a backlog on that broker wait too (aiokafka's default is 500 ms, "
            "faust's 1500 ms)"
        ),
    )

    request_timeout_ms: int = Field(
        default=40_000,
        ge=1_000,
        description=(
            "how long an aiokafka client waits for the broker to answer one request (aiokafka's "
            "default). A send not acknowledged in time is retried by the service for as long as "
            "the broker stays away: it is back-pressure, not an error"
        ),
    )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
            if self.ssl_certfile and self.ssl_keyfile:
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
            kwargs["ssl_context"] = context
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kwargs


class HttpServerSettings(_Block):
    """The small HTTP port serving /metrics, /healthz and /readyz (DESIGN §8)."""

    host: str = "0.0.0.0"  # noqa: S104 - pods must be scrapeable; local runs override with 127.0.0.1
    port: int = Field(default=9400, ge=0, le=65535)
    ready_stale_seconds: float = Field(
        default=120.0,
        gt=0,
        description="/readyz fails when the main loop made no progress this long",
    )


class TelemetrySettings(_Block):
    """Logging and tracing knobs. Standard OTEL_* variables are left to the SDK."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console", "auto"] = "auto"
    tracing_enabled: bool = True


class RetrySettings(_Block):
    """Retry budget for transient errors: exponential backoff with full jitter (DESIGN §4)."""

    initial_backoff_seconds: float = Field(default=0.2, gt=0)
    max_backoff_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    deadline_seconds: float = Field(default=120.0, gt=0)


class FloodGuardSettings(_Block):
    """Stop consuming instead of draining the input into the DLQ (DESIGN §4)."""

    enabled: bool = True
    window: int = Field(default=200, ge=1, description="records in the sliding window")
    max_dead_letter_ratio: float = Field(default=0.5, gt=0, le=1)
    min_records: int = Field(default=50, ge=1, description="ratio is judged only past this many")
    max_consecutive: int = Field(default=100, ge=1)


class ServiceSettings(BaseSettings):
    """Base for every service's settings: env prefix ``DINGDEE_``, nested delimiter ``__``."""

    model_config = SettingsConfigDict(
        env_prefix="DINGDEE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    http: HttpServerSettings = HttpServerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()


def masked(settings: BaseModel) -> dict[str, Any]:
    """The settings as a dict fit for a log line: every ``SecretStr`` shows as ``'**********'``."""
    return settings.model_dump(mode="json")
