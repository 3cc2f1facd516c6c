"""Metrics every stage exposes (DESIGN §8), registered on an explicitly passed registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "StageMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
AGE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


@dataclass
class StageMetrics:
    """RED metrics of one pipeline stage; ``stage`` is a label so one dashboard serves all three."""

    records_in: Counter
    records_out: Counter
    dead_letters: Counter
    processing: Histogram
    record_age: Histogram
    consumer_lag: Gauge
    consumer_lag_seconds: Gauge
    flood_guard_tripped: Gauge
    ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, stage: str | None = None) -> StageMetrics:
        """Register the metrics; with ``stage``, its gauges start at 0 so alerts see a series."""
        metrics = cls(
            records_in=Counter(
                "dingdee_records_in_total",
                "Records consumed by a stage",
                ["stage", "flow"],
                registry=registry,
            ),
            records_out=Counter(
                "dingdee_records_out_total",
                "Records a stage finished, by outcome",
                ["stage", "flow", "outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "dingdee_dlq_records_total",
                "Records dead-lettered, by error class",
                ["stage", "flow", "error_class"],
                registry=registry,
            ),
            processing=Histogram(
                "dingdee_processing_duration_seconds",
                "Time a stage spent on one record or batch",
                ["stage"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            record_age=Histogram(
                "dingdee_record_age_seconds",
                "End-to-end age of a record (now - DingTalk fetch time) when a stage finishes it",
                ["stage", "flow"],
                buckets=AGE_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "dingdee_consumer_lag_records",
                "Records between the committed offset and the end of each input partition",
                ["stage", "topic"],
                registry=registry,
            ),
            consumer_lag_seconds=Gauge(
                "dingdee_consumer_lag_seconds",
                "Age of the oldest record not yet processed by a stage",
                ["stage", "topic"],
                registry=registry,
            ),
            flood_guard_tripped=Gauge(
                "dingdee_flood_guard_tripped",
                "1 while the stage stopped consuming because too many records were dead-lettered",
                ["stage"],
                registry=registry,
            ),
            ready=Gauge(
                "dingdee_ready", "1 while the stage reports ready", ["stage"], registry=registry
            ),
        )
        if stage is not None:
            metrics.flood_guard_tripped.labels(stage).set(0)
            metrics.ready.labels(stage).set(0)
        return metrics
