"""What every part of a field rule shares: the evaluation context, errors, the omitted marker.

Problems are appended to an error list as :class:`FieldError` (never raised), so one run reports
every broken field of an approval at once; inside one rule a step raises :class:`RuleFailed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dingdee_transformer.encodings import Form, Row
from dingdee_transformer.schema import FieldRule

__all__ = [
    "OMIT",
    "Context",
    "FieldError",
    "LookupProblem",
    "RuleFailed",
    "by_target",
    "label_of",
    "number_text",
    "quote",
    "read_label_of",
]


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
"""An optional field with no value: left out of the Model rather than sent as null."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: Kingdee target path, the form-side label, what is wrong, which rule."""

    target: str
    label: str
    problem: str
    rule: str
    # a live lookup that missed: (reference source, key) the record can wait for (issue #14)
    waits_on: tuple[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.label} {self.problem} [{self.target}: {self.rule}]"


@dataclass(slots=True)
class Context:
    """What rules read: the form, the approval attributes, reference tables, the tenant zone."""

    form: Form
    attrs: Mapping[str, Any]
    tables: Mapping[str, Mapping[str, str]]
    tz: ZoneInfo
    row: Row | None = None
    table_label: str = ""  # the table whose ``row`` is being evaluated

    @property
    def row_label(self) -> str:
        """How errors name the current row: ``费用明细第2行``."""
        return f"{self.table_label}第{self.row.number}行" if self.row is not None else ""


class RuleFailed(Exception):
    """One step of a rule refused the value: the problem and the rule that said so."""

    def __init__(self, problem: str, rule: str, waits_on: tuple[str, str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.rule = rule
        self.waits_on = waits_on


class LookupProblem(ValueError):
    """A live lookup found something unusable: two candidates, or a disabled record."""


def quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return f"'{text[:80]}'"


def number_text(value: Any) -> str:
    """A number as finance reads it: ``-200.00`` (every place kept, never ``-2E+2``)."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def by_target(rule: FieldRule) -> bool:
    """Errors of this rule name the field by its target: no table, component, cell or attr."""
    return not (rule.rows or rule.component or rule.cell or rule.attr)


def label_of(target: str, rule: FieldRule, ctx: Context) -> str:
    """How an error names the field it could not read: by the rule's own words."""
    if by_target(rule):
        return target
    if rule.rows is not None:
        return rule.rows.table
    if rule.component:
        return rule.component
    if rule.cell:
        return f"{ctx.row_label} {rule.cell}".strip()
    return rule.attr or target


def read_label_of(target: str, rule: FieldRule, ctx: Context) -> str:
    """How an error names a field whose value was read: a component by its form label."""
    if rule.component and rule.source_kind == "component":
        comp = ctx.form.find(rule.component)  # found moments ago, so neither missing nor ambiguous
        return (comp.name if comp else "") or rule.component
    return label_of(target, rule, ctx)
