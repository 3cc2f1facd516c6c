"""The loader's metrics (STYLE §6), registered on a registry passed in."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dingdee_common.observability.followups import FollowupMetrics
from dingdee_common.observability.metrics import LATENCY_BUCKETS, StageMetrics

__all__ = ["LoaderMetrics"]

STAGE = "loader"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


@dataclass
class LoaderMetrics:
    """Shared stage RED metrics plus BatchSave sizes, Kingdee calls, row outcomes, re-logins."""

    stage: StageMetrics
    followups: FollowupMetrics  # issue #18: attachments and write-back
    batch_size: Histogram
    kingdee_latency: Histogram
    kingdee_errors: Counter
    rows: Counter
    batches_in_flight: Gauge
    relogins: Counter
    prechecks: Counter
    kingdee_up: Gauge
    probes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LoaderMetrics:
        return cls(
            stage=StageMetrics.create(registry, "loader"),
            followups=FollowupMetrics.create(registry),
            batch_size=Histogram(
                "dingdee_loader_batch_size_records",
                "Packages per BatchSave call",
                buckets=BATCH_BUCKETS,
                registry=registry,
            ),
            kingdee_latency=Histogram(
                "dingdee_loader_kingdee_request_duration_seconds",
                "Kingdee WebAPI call latency by service",
                ["service"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            kingdee_errors=Counter(
                "dingdee_loader_kingdee_errors_total",
                "Failed Kingdee calls by service and kind (timeout, http_5xx, msgcode_1, ...)",
                ["service", "kind"],
                registry=registry,
            ),
            rows=Counter(
                "dingdee_loader_rows_total",
                "BatchSave packages by outcome (saved, already_exists, rejected, exhausted)",
                ["flow", "outcome"],
                registry=registry,
            ),
            batches_in_flight=Gauge(
                "dingdee_loader_batches_in_flight",
                "BatchSave batches currently being written",
                registry=registry,
            ),
            relogins=Counter(
                "dingdee_loader_relogins_total",
                "Re-logins after Kingdee reported the session lost",
                registry=registry,
            ),
            prechecks=Counter(
                "dingdee_loader_prechecks_total",
                "ExecuteBillQuery existence checks before (re)sending, by result",
                ["result"],
                registry=registry,
            ),
            kingdee_up=Gauge(
                "dingdee_kingdee_up",
                "0 while Kingdee as a whole is failing and the loader is paused (back-pressure)",
                registry=registry,
            ),
            probes=Counter(
                "dingdee_loader_kingdee_probes_total",
                "Probes of a failing Kingdee while paused, by result (ok, failed)",
                ["result"],
                registry=registry,
            ),
        )

    def __post_init__(self) -> None:
        self.kingdee_up.set(1)
        for result in ("ok", "failed"):  # the series exist (at 0) before the first outage
            self.probes.labels(result)

    def kingdee_error(self, service: str, kind: str) -> None:
        self.kingdee_errors.labels(service, kind).inc()
