"""The transformer's metrics (DESIGN §8): the shared RED stage metrics plus mapping outcomes."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from dingdee_common.observability.metrics import StageMetrics

__all__ = ["STAGE", "TransformerMetrics"]

STAGE = "transformer"


@dataclass
class TransformerMetrics:
    """Registered on the registry ``__main__`` (or a test) passes in."""

    stage: StageMetrics
    skipped: Counter
    field_errors: Counter
    refdata_rows: Gauge
    refdata_age: Gauge
    refdata_misses: Counter
    refdata_unrefreshed: Gauge
    parked: Gauge
    parked_oldest: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TransformerMetrics:
        return cls(
            stage=StageMetrics.create(registry, "transformer"),
            skipped=Counter(
                "dingdee_transformer_skipped_total",
                "Approval snapshots that made no bill, by reason",
                ["flow", "reason"],
                registry=registry,
            ),
            field_errors=Counter(
                "dingdee_transformer_field_errors_total",
                "Field rules an approval broke, by rule kind",
                ["flow", "rule"],
                registry=registry,
            ),
            refdata_rows=Gauge(
                "dingdee_refdata_rows",
                "Rows of a reference source held in memory (usable or not)",
                ["source"],
                registry=registry,
            ),
            refdata_age=Gauge(
                "dingdee_refdata_age_seconds",
                "Seconds since a reference source last received a row",
                ["source"],
                registry=registry,
            ),
            refdata_unrefreshed=Gauge(
                "dingdee_refdata_awaiting_first_refresh",
                "1 while no completed refresh of a live source its lookups read has been seen "
                "(the transformer waits for it before mapping, up to a limit), else 0",
                ["source"],
                registry=registry,
            ),
            refdata_misses=Counter(
                "dingdee_refdata_misses_total",
                "Lookups that found no usable row, by the source the record waits for",
                ["source"],
                registry=registry,
            ),
            parked=Gauge(
                "dingdee_parked_records",
                "Records waiting for a reference row, by the source they wait for",
                ["source"],
                registry=registry,
            ),
            parked_oldest=Gauge(
                "dingdee_parked_oldest_age_seconds",
                "Age of the oldest parked record (since it was first parked), 0 when none",
                [],
                registry=registry,
            ),
        )
