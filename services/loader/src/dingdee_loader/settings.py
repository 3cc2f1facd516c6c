"""``LoaderSettings``: everything the loader reads from the environment (STYLE §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from dingdee_common.settings import (
    FloodGuardSettings,
    HttpServerSettings,
    RetrySettings,
    ServiceSettings,
)

__all__ = ["BackpressureSettings", "KingdeeSettings", "LoaderSettings"]


class KingdeeSettings(BaseModel):
    """How to reach one Kingdee data center (``DINGDEE_KINGDEE__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_url: str = Field(description="K3Cloud web root incl. virtual dir, e.g. http://h/k3cloud")
    acct_id: str = Field(min_length=1, description="data-center id (账套 DCID)")
    username: str = Field(min_length=1, description="integration user")
    app_id: SecretStr = Field(
        default=SecretStr(""),
        description="signature mode: <clientId>_<encodedSecret>; a secret, since its second "
        "part is the key of the request signature",
    )
    app_secret: SecretStr = SecretStr("")
    password: SecretStr | None = Field(default=None, description="session mode (ValidateUser)")
    auth_mode: Literal["signature", "session"] = "signature"
    lcid: int = 2052
    org_num: str = "0"
    timeout_seconds: float = Field(default=30.0, gt=0, description="per Kingdee call")
    refused_retry_seconds: float = Field(
        default=300.0,
        gt=0,
        description="wait between tries while Kingdee refuses the login, permission or licence "
        "(not ready meanwhile); long, since about 5 wrong passwords in a row lock the account",
    )
    concurrency: int = Field(
        default=4, ge=1, description="batches in flight per account; one session each"
    )
    primary_keys: dict[str, str] = Field(
        default_factory=lambda: {"BD_Department": "FDEPTID"},
        description="FormId → primary-key field for existence queries (default FID)",
    )

    @model_validator(mode="after")
    def _credentials(self) -> KingdeeSettings:
        if self.auth_mode == "signature" and (
            len(self.app_id.get_secret_value().split("_")) != 2
            or not self.app_secret.get_secret_value()
        ):
            raise ValueError("signature mode needs DINGDEE_KINGDEE__APP_ID and __APP_SECRET")
        if self.auth_mode == "session" and not self.password:
            raise ValueError("session mode needs DINGDEE_KINGDEE__PASSWORD")
        return self

    def primary_key(self, form_id: str) -> str:
        return self.primary_keys.get(form_id, "FID")


class BackpressureSettings(BaseModel):
    """When Kingdee as a whole counts as failing, and how it is probed meanwhile
    (``DINGDEE_BACKPRESSURE__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pause_after_failures: int = Field(
        default=3,
        ge=1,
        description="transient failures of Kingdee calls in a row, on any lane and with no "
        "BatchSave answered between, that pause consuming (a batch whose retry budget runs out "
        "with no bill saved anywhere since its first failure pauses it too)",
    )
    probe_initial_backoff_seconds: float = Field(
        default=0.5, gt=0, description="first wait before probing a failing Kingdee"
    )
    probe_max_backoff_seconds: float = Field(
        default=30.0,
        gt=0,
        description="cap of the doubling, fully jittered wait between probes; after Kingdee "
        "is back, the loader resumes within about this long",
    )

    @property
    def probe_policy(self) -> RetrySettings:
        """The probe's backoff as the one retry policy type (its cap and deadline unused)."""
        return RetrySettings(
            initial_backoff_seconds=self.probe_initial_backoff_seconds,
            max_backoff_seconds=self.probe_max_backoff_seconds,
        )


class AttachmentSettings(BaseModel):
    """Attachment uploads (``DINGDEE_ATTACHMENTS__*``, issue #18)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="consume attachments.work")
    chunk_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024 * 1024,
        description="bytes per AttachmentUpLoad chunk (kingdee.md §10.4.1: files over 4 MB "
        "must be chunked); one chunk is in memory at a time",
    )


class RefdataSettings(BaseModel):
    """Kingdee reference sources (``DINGDEE_REFDATA__*``, issue #14)."""

    min_interval_seconds: float = Field(
        default=30.0, ge=0, description="refresh requests for one source: one query per this"
    )
    retry_seconds: float = Field(default=30.0, gt=0, description="after a failed refresh")


class LoaderSettings(ServiceSettings):
    """Built once by ``__main__`` from ``DINGDEE_*`` variables and passed to every component."""

    kingdee: KingdeeSettings
    http: HttpServerSettings = HttpServerSettings(port=9403)
    group_id: str = Field(default="loader", min_length=1, description="consumer group id")
    batch_max_records: int = Field(default=50, ge=1, description="packages per BatchSave call")
    batch_linger_seconds: float = Field(
        default=0.2, ge=0, description="how long a partial batch waits for more bills"
    )
    max_pending_records: int = Field(
        default=2000, ge=1, description="consumed but unresolved bills before fetching pauses"
    )
    batch_count: int = Field(default=0, ge=0, description="BatchCount sent to Kingdee; 0 = omit")
    precheck: Literal["suspect", "always"] = Field(
        default="suspect",
        description="ExecuteBillQuery before the first send: only when a bill may have been sent "
        "before (replays, backlog found at start or rebalance), or always",
    )
    precheck_clock_skew_seconds: float = Field(
        default=5.0,
        ge=0,
        description="records timestamped up to this long after an assignment still count as "
        "written before it (producer and loader clocks differ)",
    )
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    retry: RetrySettings = RetrySettings()
    backpressure: BackpressureSettings = BackpressureSettings()
    flood_guard: FloodGuardSettings = FloodGuardSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    flows_file: Path = Field(
        default=Path("config/flows.yaml"),
        description="DINGDEE_FLOWS_FILE: its Kingdee reference sources (read if present)",
    )
    refdata: RefdataSettings = RefdataSettings()
