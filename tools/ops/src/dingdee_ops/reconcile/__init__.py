"""Reconciliation (DESIGN §5): approved DingTalk instances vs Kingdee bills vs the DLQs."""

from dingdee_ops.reconcile.model import Expected, Extra, KafkaFacts, ReconcileReport, classify

__all__ = ["Expected", "Extra", "KafkaFacts", "ReconcileReport", "classify"]
