"""What reconciliation compares and how it decides (DESIGN §5 "Reconciliation").

Per flow and period, every DingTalk instance that the flow's mapping turns into a bill is
*expected* in Kingdee under its bill key. Each expected bill ends up in exactly one bucket:

- ``matched``: Kingdee has it (exactly once);
- ``dead_lettered``: not in Kingdee, but a DLQ holds a record of that instance or bill key;
- ``in_flight``: not in Kingdee, but its record is still on a pipeline topic past the consuming
  group's committed offset;
- ``missing``: none of the above — this is what makes ``dingdee reconcile`` exit non-zero.

``extra`` lists Kingdee bills that should not be there: a bill key found more than once, a bill
of an instance in the period that the mapping does not turn into a bill (refused, revoked …), or a
bill whose number has the flow's bill-key pattern (``BYJ{business_id}`` → ``BYJ…``) although no
approved instance of the period has that bill key and the pipeline never produced it (made by
hand, or by another system). Extras also make ``dingdee reconcile`` exit non-zero.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Expected", "Extra", "KafkaFacts", "KeyPattern", "ReconcileReport", "classify"]


@dataclass(frozen=True, slots=True)
class Expected:
    """One DingTalk instance of the period and the bill the flow's mapping makes of it."""

    process_instance_id: str
    business_id: str | None
    bill_key: str | None
    problem: str | None = None  # why the mapping failed (the bill key may then be unknown)


@dataclass(frozen=True, slots=True)
class Extra:
    bill_key: str
    count: int
    why: str


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """The bill numbers a flow's bill-key template can produce: its fixed text, anything between.

    ``literals`` are the template's fixed parts around its placeholders (``BYJ{business_id}`` →
    ``("BYJ", "")``); each placeholder stands for at least one character.
    """

    literals: tuple[str, ...]

    @property
    def fixed(self) -> bool:
        """Whether the template has fixed text at all (``{form:部门编码}`` has none)."""
        return any(self.literals)

    def like(self) -> str:
        """The SQL ``LIKE`` pattern for Kingdee's ``FilterString`` (SQL Server escapes, quoted)."""
        escaped = (re.sub(r"([%_\[])", r"[\1]", lit).replace("'", "''") for lit in self.literals)
        return "%".join(escaped)

    def matches(self, number: str) -> bool:
        regex = ".+".join(re.escape(lit) for lit in self.literals)
        return re.fullmatch(regex, number, re.DOTALL) is not None


@dataclass(frozen=True, slots=True)
class KafkaFacts:
    """What the topics say about instances and bill keys.

    ``dead_letters`` and ``in_flight`` map an instance id *or* a bill key to a short description
    (``dlq.loader/0/12: kingdee_row_rejected``); ``bill_keys`` maps instance ids to the bill keys
    the pipeline produced for them (from ``bills.ready`` / ``bills.result``).
    """

    dead_letters: Mapping[str, str] = field(default_factory=dict)
    in_flight: Mapping[str, str] = field(default_factory=dict)
    bill_keys: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    flow: str
    period_from: datetime
    period_to: datetime
    instances: int = 0
    not_applicable: int = 0
    matched: list[Expected] = field(default_factory=list)
    dead_lettered: list[tuple[Expected, str]] = field(default_factory=list)
    in_flight: list[tuple[Expected, str]] = field(default_factory=list)
    missing: list[Expected] = field(default_factory=list)
    extra: list[Extra] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return len(self.matched) + len(self.dead_lettered) + len(self.in_flight) + len(self.missing)

    unchecked_extras: str | None = None  # why bills by number pattern were not looked for

    @property
    def ok(self) -> bool:
        """True when nothing is missing and nothing is extra.

        Dead letters and in-flight records are accounted for: they are neither.
        """
        return not self.missing and not self.extra

    def counts(self) -> dict[str, int]:
        return {
            "instances": self.instances,
            "not_applicable": self.not_applicable,
            "expected": self.expected,
            "matched": len(self.matched),
            "dead_lettered": len(self.dead_lettered),
            "in_flight": len(self.in_flight),
            "missing": len(self.missing),
            "extra": len(self.extra),
        }


def _lookup(facts: Mapping[str, str], item: Expected) -> str | None:
    for ref in (item.bill_key, item.process_instance_id):
        if ref and ref in facts:
            return facts[ref]
    return None


def classify(
    report: ReconcileReport,
    expected: Sequence[Expected],
    skipped_instances: Iterable[str],
    in_kingdee: Counter[str],
    facts: KafkaFacts,
    by_pattern: Counter[str] | None = None,
) -> ReconcileReport:
    """Sort every expected bill into its bucket and find the extra ones; fills ``report``.

    ``by_pattern`` counts the Kingdee bills whose number has the flow's bill-key pattern.
    """
    for item in expected:
        count = in_kingdee.get(item.bill_key, 0) if item.bill_key else 0
        if count:
            report.matched.append(item)
            if count > 1:
                report.extra.append(
                    Extra(item.bill_key or "", count, "同一单据编号在金蝶中有多张单据")
                )
            continue
        dead = _lookup(facts.dead_letters, item)
        if dead:
            report.dead_lettered.append((item, dead))
            continue
        flying = _lookup(facts.in_flight, item)
        if flying:
            report.in_flight.append((item, flying))
            continue
        report.missing.append(item)
    for instance_id in skipped_instances:
        key = facts.bill_keys.get(instance_id)
        if key and in_kingdee.get(key, 0):
            report.extra.append(
                Extra(
                    key,
                    in_kingdee[key],
                    f"钉钉实例 {instance_id} 不满足生成单据的条件，金蝶中却有单据",
                )
            )
    _unsourced(report, expected, by_pattern or Counter(), facts)
    return report


def _unsourced(
    report: ReconcileReport,
    expected: Sequence[Expected],
    by_pattern: Counter[str],
    facts: KafkaFacts,
) -> None:
    """Bills of the flow's number pattern that no approved instance or pipeline bill explains."""
    explained = {e.bill_key for e in expected if e.bill_key}
    explained |= {x.bill_key for x in report.extra}
    explained |= set(facts.bill_keys.values())
    for number, count in sorted(by_pattern.items()):
        if number not in explained:
            report.extra.append(
                Extra(
                    number,
                    count,
                    "单号符合本流程的单号格式，但期间内没有对应的已审批钉钉实例，流水线也没有生成过它",
                )
            )
