"""How a stage finished a record: one vocabulary for metrics, ``bills.result`` and logs.

``Outcome`` is the ``outcome`` label of ``dingdee_records_out_total`` in every stage, the
loader's per-bill resolution, and the ``outcome`` log field. ``docs/metrics.md`` lists exactly
these values (``tests/unit/ops/test_metrics_catalogue.py``). ``bills.result`` keeps its own wire
values (``BillOutcome``); ``bill_outcome`` is the one translation.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome"]


class Outcome(enum.StrEnum):
    """A record's final outcome in a stage."""

    EMITTED = "emitted"  # produced downstream (extractor: approvals.raw; transformer: bills.ready)
    SKIPPED = "skipped"  # finished without output (transformer: not approved, already mapped, …)
    SAVED = "saved"  # loader: Kingdee saved the bill
    ALREADY_EXISTS = "already_exists"  # loader: Kingdee already had the bill
    DEAD_LETTERED = "dead_lettered"  # written to dlq.<stage>
    PARKED = "parked"  # transformer: waits for a missing reference row (transformer.parked)
