"""Reconciliation buckets: matched, dead-lettered, in flight, missing, extra."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from dingdee_common.reconcile.model import Expected, KafkaFacts, ReconcileReport, classify

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 2, tzinfo=UTC)


def run(
    expected: list[Expected],
    in_kingdee: Counter[str],
    facts: KafkaFacts,
    skipped: list[str] | None = None,
) -> ReconcileReport:
    return classify(
        ReconcileReport("petty-cash", T0, T1), expected, skipped or [], in_kingdee, facts
    )


class TestClassify:
    def test_each_expected_bill_lands_in_exactly_one_bucket(self) -> None:
        items = [
            Expected("i1", "b1", "BX-1"),
            Expected("i2", "b2", "BX-2"),
            Expected("i3", "b3", "BX-3"),
            Expected("i4", "b4", "BX-4"),
            Expected("i5", "b5", None, problem="金额 缺失"),
        ]
        facts = KafkaFacts(
            dead_letters={
                "BX-2": "dlq.loader/0/3: kingdee_row_rejected",
                "i5": "dlq.transformer/0/0",
            },
            in_flight={"i3": "bills.ready/1/9"},
        )
        report = run(items, Counter({"BX-1": 1}), facts)
        assert [e.bill_key for e in report.matched] == ["BX-1"]
        assert [e.process_instance_id for e, _ in report.dead_lettered] == ["i2", "i5"]
        assert [e.process_instance_id for e, _ in report.in_flight] == ["i3"]
        assert [e.process_instance_id for e in report.missing] == ["i4"]
        assert report.expected == 5
        assert not report.ok

    def test_kingdee_wins_over_a_stale_dead_letter(self) -> None:
        """A bill saved after a replay still has its old dead letter: it counts as matched."""
        report = run([Expected("i1", None, "BX-1")], Counter({"BX-1": 1}), KafkaFacts({"i1": "x"}))
        assert len(report.matched) == 1 and report.ok

    def test_duplicates_and_bills_of_unqualified_instances_are_extra(self) -> None:
        facts = KafkaFacts(bill_keys={"i9": "BX-9"})
        report = run(
            [Expected("i1", None, "BX-1")],
            Counter({"BX-1": 2, "BX-9": 1}),
            facts,
            skipped=["i9", "i10"],
        )
        assert sorted((x.bill_key, x.count) for x in report.extra) == [("BX-1", 2), ("BX-9", 1)]
        assert report.ok, "extra bills are reported but do not mean something is missing"

    def test_nothing_expected_is_ok(self) -> None:
        report = run([], Counter(), KafkaFacts())
        assert report.ok and report.counts()["expected"] == 0
