"""One field rule that reads the approval: its source, its steps and its checks.

source → pick → trim → map/lookup → convert → checks → ref. Each rule is resolved once per flow
at start-up into closures; per record only those run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dingdee_transformer.convert import ConversionError, converter
from dingdee_transformer.encodings import Component, FormError, is_empty
from dingdee_transformer.rulebase import (
    OMIT,
    Context,
    FieldError,
    LookupProblem,
    RuleFailed,
    label_of,
    number_text,
    quote,
    read_label_of,
)
from dingdee_transformer.schema import DEFAULT_MAX_ABS, FieldRule
from dingdee_transformer.templates import compile_template

__all__ = ["Evaluator", "compile_value", "wrap"]


def _people(comp: Component, pick: str) -> Any:
    attr = "userid" if pick.startswith("userid") else "name"
    values = [p[attr] for p in comp.contacts() if p[attr]]
    if pick in ("userid", "name"):
        return values[0] if values else None
    return ",".join(values)


def _range_part(comp: Component, pick: str) -> Any:
    parts = comp.json_list()
    index = 0 if pick == "start" else 1
    return parts[index] if len(parts) > index else None


def _count(comp: Component, _pick: str) -> int:
    return len(comp.rows()) if comp.component_type == "TableField" else len(comp.json_list())


def _file_names(comp: Component, _pick: str) -> str:
    return ",".join(str(f.get("fileName", "")) for f in comp.json_list() if isinstance(f, dict))


_PICKERS = {
    "key": lambda comp, _pick: comp.select_key(),
    "userid": _people,
    "userids": _people,
    "name": _people,
    "names": _people,
    "start": _range_part,
    "end": _range_part,
    "count": _count,
    "file_names": _file_names,
}


Source = Callable[[Context], Any]
"""Reads a rule's raw value from the approval (raises :class:`RuleFailed` or ``FormError``)."""
Step = Callable[[Any, Context], Any]
Evaluator = Callable[[Context, list[FieldError]], Any]
"""A compiled rule: the field's Kingdee value (or :data:`OMIT`); problems go to the list."""


def _component_source(rule: FieldRule) -> Source:
    name = rule.component or ""
    pick, required = rule.pick, rule.required
    picker = _PICKERS.get(pick)

    def read(ctx: Context) -> Any:
        comp = ctx.form.find(name)
        if comp is None:
            if required:
                raise RuleFailed("is missing from the form", "component")
            return None
        return picker(comp, pick) if picker else comp.value

    return read


def _cell_source(rule: FieldRule) -> Source:
    name, required = rule.cell or "", rule.required

    def read(ctx: Context) -> Any:
        if ctx.row is None:
            raise RuleFailed("cell rules only work inside rows", "cell")
        found, value, _ext = ctx.row.cell(name)
        if not found and required:
            raise RuleFailed("is missing from the row", "cell")
        return value

    return read


def _template_source(rule: FieldRule) -> Source:
    render = compile_template(rule.template or "")

    def read(ctx: Context) -> Any:
        text, problem = render(ctx)
        if problem:
            raise RuleFailed(problem, "template")
        return text

    return read


def _source(rule: FieldRule) -> Source:
    kind = rule.source_kind
    if kind == "component":
        return _component_source(rule)
    if kind == "cell":
        return _cell_source(rule)
    if kind == "template":
        return _template_source(rule)
    attr = rule.attr or ""
    return lambda ctx: ctx.attrs.get(attr)


def _translation(rule: FieldRule) -> Step | None:
    if rule.map is not None:
        table, has_default, fallback = rule.map, rule.has_map_default, rule.map_default
        choices = ", ".join(list(table)[:10])

        def mapped(value: Any, _ctx: Context) -> Any:
            key = str(value)
            if key in table:
                return table[key]
            if has_default:
                return fallback
            raise RuleFailed(f"{quote(value)} is not one of: {choices}", "map")

        return mapped
    if rule.lookup is not None:
        name, lookup_default = rule.lookup, rule.lookup_default

        def looked_up(value: Any, ctx: Context) -> Any:
            table, key = ctx.tables.get(name), str(value)
            try:
                found = table.get(key) if table is not None else None
            except LookupProblem as exc:
                raise RuleFailed(str(exc), f"lookup {name}") from None
            if found is not None:
                return found
            if lookup_default is not None:
                return lookup_default
            explain = getattr(table, "explain", None)
            if explain is not None:  # a live table: the record can wait for the row (parking)
                problem, waits_on = explain(key)
                raise RuleFailed(problem, f"lookup {name}", waits_on)
            raise RuleFailed(f"{quote(value)} is not in reference table {name!r}", f"lookup {name}")

        return looked_up
    return None


def _checks(rule: FieldRule) -> Callable[[Any], None] | None:
    pattern = re.compile(rule.pattern) if rule.pattern is not None else None
    max_length = rule.max_length
    numeric = _numeric_checks(rule)
    if pattern is None and max_length is None:
        return numeric

    def check(value: Any) -> None:
        text = value if isinstance(value, str) else str(value)
        if pattern is not None and not pattern.fullmatch(text):
            raise RuleFailed(f"{quote(value)} does not match {pattern.pattern}", "pattern")
        if max_length is not None and len(text) > max_length:
            raise RuleFailed(f"is longer than {max_length} characters", "max_length")
        if numeric is not None:
            numeric(value)

    return check


def _numeric_checks(rule: FieldRule) -> Callable[[Any], None] | None:
    """Sign (money: above 0 unless allowed), ``min``/``max``/``range`` and ``max_abs``."""
    money = rule.convert == "money"
    low, high = rule.bounds
    max_abs = rule.max_abs if rule.max_abs is not None or not money else DEFAULT_MAX_ABS
    no_negative, no_zero = money and not rule.allow_negative, money and not rule.allow_zero
    if not (no_negative or no_zero or low is not None or high is not None or max_abs):
        return None
    if no_negative and no_zero:
        sign = "must be greater than 0"
    elif no_negative:
        sign = "must not be negative"
    else:
        sign = "must not be 0"

    def check(value: Any) -> None:
        if (no_negative and value < 0) or (no_zero and value == 0):
            raise RuleFailed(f"{number_text(value)} {sign}", "sign")
        if low is not None and value < low:
            raise RuleFailed(f"{number_text(value)} must be at least {number_text(low)}", "min")
        if high is not None and value > high:
            raise RuleFailed(f"{number_text(value)} must be at most {number_text(high)}", "max")
        if max_abs is not None and abs(value) > max_abs:
            raise RuleFailed(
                f"{number_text(value)} is beyond the largest amount allowed "
                f"(±{number_text(max_abs)})",
                "max_abs",
            )

    return check


def _steps(rule: FieldRule) -> Step:
    """trim → map/lookup → convert → checks, as one function."""
    trim, translate, check = rule.trim, _translation(rule), _checks(rule)
    conversion, convert_rule = converter(rule.convert, precision=rule.precision), rule.convert

    def steps(value: Any, ctx: Context) -> Any:
        if trim and isinstance(value, str):
            value = value.strip()
        if translate is not None:
            value = translate(value, ctx)
        try:
            value = conversion(value, ctx.tz)
        except ConversionError as exc:
            raise RuleFailed(str(exc), f"convert {convert_rule}") from exc
        if check is not None:
            check(value)
        return value

    return steps


def wrap(value: Any, rule: FieldRule) -> Any:
    return {rule.ref: value} if rule.ref else value


def compile_value(target: str, rule: FieldRule) -> Evaluator:
    """A rule that reads one value from the approval (not a rows rule, not a constant: those sit
    in the builder's template) as one function, resolved once per flow at start-up.

    ``target`` names the field in errors; inside rows the caller renames the row's errors.
    """
    source, steps = _source(rule), _steps(rule)
    ref, required, has_default = rule.ref, rule.required, rule.has_default
    default = wrap(rule.default, rule)

    def evaluate(ctx: Context, errors: list[FieldError]) -> Any:
        try:
            value = source(ctx)
            if is_empty(value):
                if has_default:
                    return default
                if required:
                    raise RuleFailed("is required but empty", "required")
                return OMIT
        except RuleFailed as exc:
            errors.append(FieldError(target, label_of(target, rule, ctx), exc.problem, exc.rule))
            return OMIT
        except (FormError, ConversionError) as exc:
            errors.append(
                FieldError(target, label_of(target, rule, ctx), str(exc), rule.source_kind)
            )
            return OMIT
        try:
            value = steps(value, ctx)
        except RuleFailed as exc:
            label = read_label_of(target, rule, ctx)
            errors.append(FieldError(target, label, exc.problem, exc.rule, exc.waits_on))
            return OMIT
        return {ref: value} if ref else value

    return evaluate
