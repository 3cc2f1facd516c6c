"""The transformer's metrics (DESIGN §8): the shared RED stage metrics plus mapping outcomes."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from dingdee_common.observability.metrics import StageMetrics

__all__ = ["STAGE", "TransformerMetrics"]

STAGE = "transformer"


@dataclass
class TransformerMetrics:
    """Registered on the registry ``__main__`` (or a test) passes in."""

    stage: StageMetrics
    skipped: Counter
    field_errors: Counter

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
        )
