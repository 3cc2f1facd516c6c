"""Cross-field checks (``mapping.checks``): read the approval and the built Model together."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from dingdee_transformer.fieldset import compile_rule
from dingdee_transformer.rulebase import OMIT, Context, FieldError, number_text, read_label_of
from dingdee_transformer.schema import CrossCheck, FieldRule

__all__ = ["CrossChecker", "compile_checks"]


CrossChecker = Callable[[Context, dict[str, Any], list[FieldError]], None]
"""A compiled cross-field check: reads the approval and the built Model, appends problems."""


def compile_checks(
    checks: Iterable[CrossCheck], fields: Mapping[str, FieldRule]
) -> tuple[CrossChecker, ...]:
    """``mapping.checks`` as functions (``flowspec`` has checked that each ``sum_of`` exists)."""
    return tuple(_compile_sum(i, check, fields) for i, check in enumerate(checks))


def _compile_sum(index: int, check: CrossCheck, fields: Mapping[str, FieldRule]) -> CrossChecker:
    rows_key, row_key = check.sum_of.split(".", 1)
    rows = fields[rows_key].rows
    assert rows is not None  # noqa: S101 - flowspec rejects a sum_of that is not a rows field
    cell = rows.fields[row_key].cell or row_key
    target = f"checks[{index}].total"
    read_total = compile_rule(target, check.total)

    def run(ctx: Context, model: dict[str, Any], errors: list[FieldError]) -> None:
        before = len(errors)
        total = read_total(ctx, errors)
        entries = model.get(rows_key)
        if total is OMIT or len(errors) > before or not isinstance(entries, list):
            return
        summed = sum((row.get(row_key, 0) for row in entries), Decimal(0))
        if summed != total:
            errors.append(
                FieldError(
                    check.sum_of,
                    read_label_of(target, check.total, ctx),
                    f"{number_text(total)} does not equal the sum of {rows.table} {cell} "
                    f"over {len(entries)} row(s), {number_text(summed)}",
                    "sum_of",
                )
            )

    return run
