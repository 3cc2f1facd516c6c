"""Evaluation of one field rule: source → pick → trim → map/lookup → convert → checks → ref.

Problems are appended to an error list as :class:`FieldError` (never raised), so one run reports
every broken field of an approval at once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dingdee_transformer.convert import ConversionError, converter
from dingdee_transformer.encodings import Component, Form, FormError, Row, is_empty
from dingdee_transformer.schema import (
    DEFAULT_MAX_ABS,
    PLACEHOLDER,
    CrossCheck,
    FieldRule,
    RowsRule,
)

__all__ = [
    "OMIT",
    "Context",
    "CrossChecker",
    "FieldError",
    "LookupProblem",
    "ModelBuilder",
    "Template",
    "compile_checks",
    "compile_fields",
    "compile_template",
    "form_names",
    "number_text",
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


class _RuleFailed(Exception):
    def __init__(self, problem: str, rule: str, waits_on: tuple[str, str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.rule = rule
        self.waits_on = waits_on


class LookupProblem(ValueError):
    """A live lookup found something unusable: two candidates, or a disabled record."""


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return f"'{text[:80]}'"


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


def _placeholder(name: str, ctx: Context) -> Any:
    if name == "row":
        return ctx.row.number if ctx.row else None
    if name.startswith("form:"):
        comp = ctx.form.find(name[5:])
        return comp.value if comp else None
    if name.startswith("cell:"):
        return ctx.row.cell(name[5:])[1] if ctx.row else None
    return ctx.attrs.get(name)


def form_names(fields: Mapping[str, FieldRule], templates: Iterable[str] = ()) -> frozenset[str]:
    """The component ids and labels that ``fields`` and ``templates`` read from a form."""
    names: set[str] = set()
    texts = list(templates)
    for rule in fields.values():
        if rule.component is not None:
            names.add(rule.component)
        if rule.template is not None:
            texts.append(rule.template)
        if rule.rows is not None:
            names.add(rule.rows.table)
            names |= form_names(rule.rows.fields)
    for text in texts:
        for placeholder in PLACEHOLDER.findall(text):
            name = placeholder.strip()
            if name.startswith("form:"):
                names.add(name[5:])
    return frozenset(names)


Template = Callable[[Context], tuple[str, str | None]]
"""A compiled template: the filled-in text and the first problem (or ``None``)."""


def compile_template(template: str) -> Template:
    """Fill ``{business_id}``, ``{form:补单事由}``, ``{cell:金额}``, ``{row}`` placeholders.

    The template is split once; the returned function gives the text and the first problem (an
    empty or unknown placeholder), or ``None``.
    """
    parts = PLACEHOLDER.split(template)  # literal, name, literal, name, …, literal
    head, pairs = (
        parts[0],
        [(n.strip(), lit) for n, lit in zip(parts[1::2], parts[2::2], strict=True)],
    )

    def render(ctx: Context) -> tuple[str, str | None]:
        out = [head]
        problem: str | None = None
        for name, literal in pairs:
            try:
                value = _placeholder(name, ctx)
            except FormError as exc:
                problem = problem or f"placeholder {{{name}}}: {exc}"
                value = None
            else:
                if is_empty(value) or isinstance(value, (dict, list)):
                    problem = problem or f"placeholder {{{name}}} is empty"
                    value = None
            out.append("" if value is None else str(value).strip())
            out.append(literal)
        return "".join(out), problem

    return render


Source = Callable[[Context], Any]
"""Reads a rule's raw value from the approval (raises :class:`_RuleFailed` or ``FormError``)."""
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
                raise _RuleFailed("is missing from the form", "component")
            return None
        return picker(comp, pick) if picker else comp.value

    return read


def _cell_source(rule: FieldRule) -> Source:
    name, required = rule.cell or "", rule.required

    def read(ctx: Context) -> Any:
        if ctx.row is None:
            raise _RuleFailed("cell rules only work inside rows", "cell")
        found, value, _ext = ctx.row.cell(name)
        if not found and required:
            raise _RuleFailed("is missing from the row", "cell")
        return value

    return read


def _template_source(rule: FieldRule) -> Source:
    render = compile_template(rule.template or "")

    def read(ctx: Context) -> Any:
        text, problem = render(ctx)
        if problem:
            raise _RuleFailed(problem, "template")
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


def _label(target: str, rule: FieldRule, ctx: Context) -> str:
    """How an error names the field it could not read: by the rule's own words."""
    if _by_target(rule):
        return target
    if rule.rows is not None:
        return rule.rows.table
    if rule.component:
        return rule.component
    if rule.cell:
        return f"{ctx.row_label} {rule.cell}".strip()
    return rule.attr or target


def _read_label(target: str, rule: FieldRule, ctx: Context) -> str:
    """How an error names a field whose value was read: a component by its form label."""
    if rule.component and rule.source_kind == "component":
        comp = ctx.form.find(rule.component)  # found moments ago, so neither missing nor ambiguous
        return (comp.name if comp else "") or rule.component
    return _label(target, rule, ctx)


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
            raise _RuleFailed(f"{_quote(value)} is not one of: {choices}", "map")

        return mapped
    if rule.lookup is not None:
        name, lookup_default = rule.lookup, rule.lookup_default

        def looked_up(value: Any, ctx: Context) -> Any:
            table, key = ctx.tables.get(name), str(value)
            try:
                found = table.get(key) if table is not None else None
            except LookupProblem as exc:
                raise _RuleFailed(str(exc), f"lookup {name}") from None
            if found is not None:
                return found
            if lookup_default is not None:
                return lookup_default
            explain = getattr(table, "explain", None)
            if explain is not None:  # a live table: the record can wait for the row (parking)
                problem, waits_on = explain(key)
                raise _RuleFailed(problem, f"lookup {name}", waits_on)
            raise _RuleFailed(
                f"{_quote(value)} is not in reference table {name!r}", f"lookup {name}"
            )

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
            raise _RuleFailed(f"{_quote(value)} does not match {pattern.pattern}", "pattern")
        if max_length is not None and len(text) > max_length:
            raise _RuleFailed(f"is longer than {max_length} characters", "max_length")
        if numeric is not None:
            numeric(value)

    return check


def number_text(value: Any) -> str:
    """A number as finance reads it: ``-200.00`` (every place kept, never ``-2E+2``)."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


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
            raise _RuleFailed(f"{number_text(value)} {sign}", "sign")
        if low is not None and value < low:
            raise _RuleFailed(f"{number_text(value)} must be at least {number_text(low)}", "min")
        if high is not None and value > high:
            raise _RuleFailed(f"{number_text(value)} must be at most {number_text(high)}", "max")
        if max_abs is not None and abs(value) > max_abs:
            raise _RuleFailed(
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
            raise _RuleFailed(str(exc), f"convert {convert_rule}") from exc
        if check is not None:
            check(value)
        return value

    return steps


def _wrap(value: Any, rule: FieldRule) -> Any:
    return {rule.ref: value} if rule.ref else value


def _compile_rule(target: str, rule: FieldRule) -> Evaluator:
    """A rule that reads the approval (not a constant: those sit in the builder's template) as
    one function, resolved once per flow at start-up.

    ``target`` names the field in errors; inside rows the caller renames the row's errors.
    """
    if rule.rows is not None:
        return _compile_rows(target, rule, rule.rows)
    source, steps = _source(rule), _steps(rule)
    ref, required, has_default = rule.ref, rule.required, rule.has_default
    default = _wrap(rule.default, rule)

    def evaluate(ctx: Context, errors: list[FieldError]) -> Any:
        try:
            value = source(ctx)
            if is_empty(value):
                if has_default:
                    return default
                if required:
                    raise _RuleFailed("is required but empty", "required")
                return OMIT
        except _RuleFailed as exc:
            errors.append(FieldError(target, _label(target, rule, ctx), exc.problem, exc.rule))
            return OMIT
        except (FormError, ConversionError) as exc:
            errors.append(FieldError(target, _label(target, rule, ctx), str(exc), rule.source_kind))
            return OMIT
        try:
            value = steps(value, ctx)
        except _RuleFailed as exc:
            label = _read_label(target, rule, ctx)
            errors.append(FieldError(target, label, exc.problem, exc.rule, exc.waits_on))
            return OMIT
        return {ref: value} if ref else value

    return evaluate


ModelBuilder = Callable[[Context, list[FieldError]], dict[str, Any]]


def compile_fields(
    fields: Mapping[str, FieldRule], *, number_field: str | None = None
) -> ModelBuilder:
    """The Model fields of ``fields`` as one function: ``{key: value}`` without omitted ones.

    Constants are placed once, in a template every call copies; only the other rules run per
    call. Fields whose rules differ only in ``ref`` (three amounts read from the same cell, say)
    are evaluated once per call; each still gets its own wrap, and its own copy of any error.

    With ``number_field`` (a field the rules must not set), the Model keeps a slot for the bill
    number, holding ``None`` for the caller to fill: right after a leading constant 0 (the
    primary key, ``FID: 0``), else first. Kingdee replays Model fields in order, so the number
    goes early, as in its own templates.
    """
    template: dict[str, Any] = {}
    cores: list[Evaluator] = []
    index: dict[tuple[str, tuple[str, ...]], int] = {}
    entries: list[tuple[str, int, str | None, bool]] = []
    for key, rule in fields.items():
        if rule.source_kind == "const":
            template[key] = _wrap(rule.const, rule)
            continue
        template[key] = None  # the key's place; its value (or its absence) comes per call
        signature = (key, ()) if rule.rows is not None else _signature(rule)
        if signature not in index:
            index[signature] = len(cores)
            core = rule if rule.rows is not None else rule.model_copy(update={"ref": None})
            cores.append(_compile_rule(key, core))
        entries.append((key, index[signature], None if rule.rows else rule.ref, _by_target(rule)))
    if number_field is not None:
        template = _with_slot(template, fields, number_field)
    uses = Counter(i for _, i, _, _ in entries)
    # (key, core, ref, named by target, slot of a shared core's result or -1)
    plan = [(k, cores[i], ref, by, i if uses[i] > 1 else -1) for k, i, ref, by in entries]

    def build(ctx: Context, errors: list[FieldError]) -> dict[str, Any]:
        out = template.copy()
        done: dict[int, tuple[Any, list[FieldError]]] = {}
        for key, core, ref, by_target, slot in plan:
            if slot < 0:
                value = core(ctx, errors)
            elif slot in done:
                value, failed = done[slot]
                if failed:
                    errors.extend(_renamed(e, key, by_target) for e in failed)
            else:
                before = len(errors)
                value = core(ctx, errors)
                done[slot] = (value, errors[before:])
            if value is OMIT:
                del out[key]
            else:
                out[key] = {ref: value} if ref else value
        return out

    return build


def _with_slot(
    template: dict[str, Any], fields: Mapping[str, FieldRule], number_field: str
) -> dict[str, Any]:
    """``template`` with an empty ``number_field`` after a leading constant 0, else first."""
    items = list(template.items())
    first = fields[items[0][0]] if items else None
    leading = first is not None and first.source_kind == "const" and items[0][1] == 0
    head = items[:1] if leading else []
    return dict([*head, (number_field, None), *items[len(head) :]])


def _signature(rule: FieldRule) -> tuple[str, tuple[str, ...]]:
    """What makes two rules compute the same value: everything but ``ref``."""
    given = tuple(sorted(rule.model_fields_set - {"ref"}))
    return rule.model_dump_json(exclude={"ref"}), given


def _by_target(rule: FieldRule) -> bool:
    """Errors of this rule name the field by its target: no table, component, cell or attr."""
    return not (rule.rows or rule.component or rule.cell or rule.attr)


def _renamed(error: FieldError, target: str, by_target: bool) -> FieldError:
    return replace(error, target=target, label=target if by_target else error.label)


def _compile_rows(target: str, rule: FieldRule, spec: RowsRule) -> Evaluator:
    build_row = compile_fields(spec.fields)
    by_target = {key: _by_target(field) for key, field in spec.fields.items()}
    table, min_rows, max_rows = spec.table, spec.min_rows, spec.max_rows

    def evaluate(ctx: Context, errors: list[FieldError]) -> Any:
        try:
            comp = ctx.form.find(table)
            if comp is None:
                raise _RuleFailed("is missing from the form", "rows")
            label = comp.name or table
            try:
                rows = comp.rows()
            except FormError as exc:
                errors.append(FieldError(target, label, str(exc), "rows"))
                return OMIT
            if len(rows) < min_rows:
                raise _RuleFailed(f"has {len(rows)} rows, at least {min_rows} needed", "min_rows")
            if max_rows is not None and len(rows) > max_rows:
                raise _RuleFailed(f"has {len(rows)} rows, at most {max_rows} allowed", "max_rows")
        except _RuleFailed as exc:
            errors.append(FieldError(target, _label(target, rule, ctx), exc.problem, exc.rule))
            return OMIT
        except FormError as exc:
            errors.append(FieldError(target, _label(target, rule, ctx), str(exc), "rows"))
            return OMIT
        out: list[dict[str, Any]] = []
        row_ctx = Context(ctx.form, ctx.attrs, ctx.tables, ctx.tz, None, label)
        row_errors: list[FieldError] = []
        for row in rows:
            row_ctx.row = row
            out.append(build_row(row_ctx, row_errors))
            if row_errors:  # name the row: FEntity[2].FAmount
                errors.extend(
                    _renamed(e, f"{target}[{row.number}].{e.target}", by_target[e.target])
                    for e in row_errors
                )
                row_errors.clear()
        return out

    return evaluate


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
    read_total = _compile_rule(target, check.total)

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
                    _read_label(target, check.total, ctx),
                    f"{number_text(total)} does not equal the sum of {rows.table} {cell} "
                    f"over {len(entries)} row(s), {number_text(summed)}",
                    "sum_of",
                )
            )

    return run
