"""The outcome vocabulary and its one translation to ``bills.result``'s wire values."""

from __future__ import annotations

from dingdee_common.contracts.v1 import BillOutcome
from dingdee_common.outcomes import Outcome


def test_bills_result_keeps_its_wire_values() -> None:
    assert [o.value for o in BillOutcome] == ["saved", "already_exists", "failed"]


def test_a_loader_outcome_maps_to_its_bills_result_value() -> None:
    assert BillOutcome.of(Outcome.SAVED) is BillOutcome.SAVED
    assert BillOutcome.of(Outcome.ALREADY_EXISTS) is BillOutcome.ALREADY_EXISTS
    assert BillOutcome.of(Outcome.DEAD_LETTERED) is BillOutcome.FAILED
