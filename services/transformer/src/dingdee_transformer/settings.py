"""``TransformerSettings``: everything the transformer reads from the environment (STYLE §3)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from dingdee_common.settings import (
    FloodGuardSettings,
    HttpServerSettings,
    RetrySettings,
    ServiceSettings,
)

__all__ = ["ParkingSettings", "RefdataWaitSettings", "TransformerSettings"]


class ParkingSettings(BaseModel):
    """Records waiting for a reference row (``DINGDEE_PARKING__*``, issue #14)."""

    limit_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="how long a record may wait for a missing reference before its dead letter",
    )
    max_records: int = Field(
        default=100_000,
        ge=1,
        description="parked records held at most; past it a new miss is dead-lettered at once",
    )
    request_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="one refresh request per (source, key) per this many seconds",
    )
    check_seconds: float = Field(
        default=5.0, gt=0, description="how often the parking lot looks for expired records"
    )


class RefdataWaitSettings(BaseModel):
    """The first refresh of each live source (``DINGDEE_REFDATA__*``, issue #14)."""

    first_refresh_timeout_seconds: float = Field(
        default=240.0,
        ge=0,
        description=(
            "how long a transformer that has never seen a completed refresh of a live source "
            "its lookups read (the owner's marker on refdata.<source>) waits before mapping; "
            "not ready meanwhile. Past it, it maps anyway and logs a warning: misses park and "
            "load when the refresh comes. 0: do not wait"
        ),
    )


class TransformerSettings(ServiceSettings):
    """Built once by ``__main__`` from ``DINGDEE_*`` variables and passed to every component."""

    flows_file: Path = Field(
        default=Path("config/flows.yaml"), description="DINGDEE_FLOWS_FILE: the flows to map"
    )
    http: HttpServerSettings = HttpServerSettings(port=9402)
    group_id: str = Field(
        default="transformer", min_length=1, description="consumer group / app id"
    )
    batch_max_records: int = Field(
        default=500, ge=1, description="records mapped per batch before their bills are awaited"
    )
    batch_linger_seconds: float = Field(
        default=0.05, gt=0, description="how long a batch waits for more records"
    )
    standby_replicas: int = Field(
        default=0,
        ge=0,
        description=(
            "faust standby copies of the dedup table per partition; they only speed up a "
            "failover between replicas (the table is rebuilt from its changelog either way). "
            "0 by default: once, after a SIGKILL + restart on Tansu, faust's assignor rejected "
            "an assignment with a standby and the consumer died (not reproduced since)"
        ),
    )
    stall_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "faust's stall detector (stream_processing_timeout and "
            "broker_commit_livelock_soft_timeout): a partition of approvals.raw with records "
            "waiting that the batch loop has not taken, or whose offsets were not committed, for "
            "this long is logged at ERROR"
        ),
    )
    retry: RetrySettings = RetrySettings()
    flood_guard: FloodGuardSettings = FloodGuardSettings()
    parking: ParkingSettings = ParkingSettings()
    refdata: RefdataWaitSettings = RefdataWaitSettings()
