"""Reconciliation buckets: matched, dead-lettered, in flight, missing, extra."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from dingdee_ops.reconcile.model import (
    Expected,
    KafkaFacts,
    KeyPattern,
    ReconcileReport,
    classify,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 2, tzinfo=UTC)


def run(
    expected: list[Expected],
    in_kingdee: Counter[str],
    facts: KafkaFacts,
    skipped: list[str] | None = None,
    by_pattern: Counter[str] | None = None,
) -> ReconcileReport:
    return classify(
        ReconcileReport("petty-cash", T0, T1),
        expected,
        skipped or [],
        in_kingdee,
        facts,
        by_pattern,
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
        assert not report.missing and not report.ok, "an extra bill alone fails reconciliation"

    def test_bills_of_the_pattern_without_a_source_are_extra(self) -> None:
        """DESIGN §5: a BX… bill no approved instance of the period or pipeline bill explains."""
        facts = KafkaFacts(bill_keys={"i-old": "BX-OLD"})  # another period's bill, made by us
        by_pattern = Counter({"BX-1": 1, "BX-OLD": 1, "BX-HAND": 1})
        report = run([Expected("i1", None, "BX-1")], Counter({"BX-1": 1}), facts, None, by_pattern)
        assert [(x.bill_key, x.count) for x in report.extra] == [("BX-HAND", 1)]
        assert "没有对应的已审批钉钉实例" in report.extra[0].why
        assert not report.ok

    def test_nothing_expected_is_ok(self) -> None:
        report = run([], Counter(), KafkaFacts())
        assert report.ok and report.counts()["expected"] == 0


class TestKeyPattern:
    def test_fixed_text_becomes_a_like_pattern_and_a_full_match(self) -> None:
        pattern = KeyPattern(("BYJ", ""))
        assert pattern.fixed and pattern.like() == "BYJ%"
        assert pattern.matches("BYJ2026110312000001") and not pattern.matches("BYJ")
        assert not pattern.matches("XBYJ1")

    def test_sql_wildcards_and_quotes_in_the_fixed_text_are_escaped(self) -> None:
        pattern = KeyPattern(("A_%'[", "-", ""))
        assert pattern.like() == "A[_][%]''[[]%-%"
        assert pattern.matches("A_%'[x-y") and not pattern.matches("AB%'[x-y")

    def test_a_template_without_fixed_text_has_no_pattern(self) -> None:
        assert not KeyPattern(("", "")).fixed
