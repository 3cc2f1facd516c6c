"""Evaluation of one field rule: source → pick → trim → map/lookup → convert → checks → ref.

Problems are appended to an error list as :class:`FieldError` (never raised), so one run reports
every broken field of an approval at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dingdee_transformer.convert import ConversionError, convert
from dingdee_transformer.encodings import Component, Form, FormError, Row, is_empty
from dingdee_transformer.schema import FieldRule, RowsRule

__all__ = ["OMIT", "Context", "FieldError", "evaluate", "render_template"]

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


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

    def __str__(self) -> str:
        return f"{self.label} {self.problem} [{self.target}: {self.rule}]"


@dataclass(frozen=True, slots=True)
class Context:
    """What rules read: the form, the approval attributes, reference tables, the tenant zone."""

    form: Form
    attrs: Mapping[str, Any]
    tables: Mapping[str, Mapping[str, str]]
    tz: ZoneInfo
    row: Row | None = None
    row_label: str = ""


class _RuleFailed(Exception):
    def __init__(self, problem: str, rule: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.rule = rule


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


def _pick(comp: Component, pick: str) -> Any:
    """The part of a component a rule reads (``value`` by default; see ``FieldRule.pick``)."""
    picker = _PICKERS.get(pick)
    return picker(comp, pick) if picker else comp.value


def _component(rule: FieldRule, ctx: Context) -> tuple[str, Any]:
    name = rule.component or ""
    comp = ctx.form.find(name)
    if comp is None:
        if rule.required:
            raise _RuleFailed("is missing from the form", "component")
        return name, None
    return comp.name or name, _pick(comp, rule.pick)


def _cell(rule: FieldRule, ctx: Context) -> tuple[str, Any]:
    name = rule.cell or ""
    label = f"{ctx.row_label} {name}".strip()
    if ctx.row is None:
        raise _RuleFailed("cell rules only work inside rows", "cell")
    found, value, _ext = ctx.row.cell(name)
    if not found and rule.required:
        raise _RuleFailed("is missing from the row", "cell")
    return label, value


def _placeholder(name: str, ctx: Context) -> Any:
    if name == "row":
        return ctx.row.number if ctx.row else None
    if name.startswith("form:"):
        comp = ctx.form.find(name[5:])
        return comp.value if comp else None
    if name.startswith("cell:"):
        return ctx.row.cell(name[5:])[1] if ctx.row else None
    return ctx.attrs.get(name)


def render_template(template: str, ctx: Context) -> tuple[str, str | None]:
    """Fill ``{business_id}``, ``{form:补单事由}``, ``{cell:金额}``, ``{row}`` placeholders.

    Returns the text and the first problem (an empty or unknown placeholder), or ``None``.
    """
    problems: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        try:
            value = _placeholder(name, ctx)
        except FormError as exc:
            problems.append(f"placeholder {{{name}}}: {exc}")
            return ""
        if is_empty(value) or isinstance(value, (dict, list)):
            problems.append(f"placeholder {{{name}}} is empty")
            return ""
        return str(value).strip()

    text = _PLACEHOLDER.sub(fill, template)
    return text, problems[0] if problems else None


def _source(rule: FieldRule, ctx: Context, target: str) -> tuple[str, Any]:
    kind = rule.source_kind
    if kind == "component":
        return _component(rule, ctx)
    if kind == "cell":
        return _cell(rule, ctx)
    if kind == "attr":
        return rule.attr or "", ctx.attrs.get(rule.attr or "")
    if kind == "template":
        text, problem = render_template(rule.template or "", ctx)
        if problem:
            raise _RuleFailed(problem, "template")
        return target, text
    return target, rule.const


def _translate(value: Any, rule: FieldRule, ctx: Context) -> Any:
    if rule.map is not None:
        key = str(value)
        if key in rule.map:
            return rule.map[key]
        if rule.has_map_default:
            return rule.map_default
        choices = ", ".join(list(rule.map)[:10])
        raise _RuleFailed(f"{_quote(value)} is not one of: {choices}", "map")
    if rule.lookup is not None:
        table = ctx.tables.get(rule.lookup, {})
        found = table.get(str(value))
        if found is not None:
            return found
        if rule.lookup_default is not None:
            return rule.lookup_default
        raise _RuleFailed(
            f"{_quote(value)} is not in reference table {rule.lookup!r}", f"lookup {rule.lookup}"
        )
    return value


def _check(value: Any, rule: FieldRule) -> None:
    text = value if isinstance(value, str) else str(value)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, text):
        raise _RuleFailed(f"{_quote(value)} does not match {rule.pattern}", "pattern")
    if rule.max_length is not None and len(text) > rule.max_length:
        raise _RuleFailed(f"is longer than {rule.max_length} characters", "max_length")


def _steps(value: Any, rule: FieldRule, ctx: Context) -> Any:
    if rule.trim and isinstance(value, str):
        value = value.strip()
    value = _translate(value, rule, ctx)
    try:
        value = convert(value, rule.convert, precision=rule.precision, tz=ctx.tz)
    except ConversionError as exc:
        raise _RuleFailed(str(exc), f"convert {rule.convert}") from exc
    _check(value, rule)
    return value


def _wrap(value: Any, rule: FieldRule) -> Any:
    return {rule.ref: value} if rule.ref else value


def _evaluate(target: str, rule: FieldRule, ctx: Context, errors: list[FieldError]) -> Any:
    if rule.rows is not None:
        return _rows(target, rule.rows, ctx, errors)
    label, value = _source(rule, ctx, target)
    if rule.source_kind == "const":
        return _wrap(value, rule)
    if is_empty(value):
        if rule.has_default:
            return _wrap(rule.default, rule)
        if rule.required:
            raise _RuleFailed("is required but empty", "required")
        return OMIT
    try:
        return _wrap(_steps(value, rule, ctx), rule)
    except _RuleFailed as exc:
        errors.append(FieldError(target, label, exc.problem, exc.rule))
        return OMIT


def evaluate(target: str, rule: FieldRule, ctx: Context, errors: list[FieldError]) -> Any:
    """The Kingdee value of ``target`` per ``rule``, or :data:`OMIT`; problems go to ``errors``."""
    try:
        return _evaluate(target, rule, ctx, errors)
    except _RuleFailed as exc:
        label = _label(target, rule, ctx)
        errors.append(FieldError(target, label, exc.problem, exc.rule))
    except (FormError, ConversionError) as exc:
        errors.append(FieldError(target, _label(target, rule, ctx), str(exc), rule.source_kind))
    return OMIT


def _label(target: str, rule: FieldRule, ctx: Context) -> str:
    if rule.rows is not None:
        return rule.rows.table
    if rule.component:
        return rule.component
    if rule.cell:
        return f"{ctx.row_label} {rule.cell}".strip()
    if rule.attr:
        return rule.attr
    return target


def _rows(target: str, spec: RowsRule, ctx: Context, errors: list[FieldError]) -> Any:
    comp = ctx.form.find(spec.table)
    if comp is None:
        raise _RuleFailed("is missing from the form", "rows")
    label = comp.name or spec.table
    try:
        rows = comp.rows()
    except FormError as exc:
        errors.append(FieldError(target, label, str(exc), "rows"))
        return OMIT
    if len(rows) < spec.min_rows:
        raise _RuleFailed(f"has {len(rows)} rows, at least {spec.min_rows} needed", "min_rows")
    if spec.max_rows is not None and len(rows) > spec.max_rows:
        raise _RuleFailed(f"has {len(rows)} rows, at most {spec.max_rows} allowed", "max_rows")
    out: list[dict[str, Any]] = []
    for row in rows:
        row_ctx = Context(ctx.form, ctx.attrs, ctx.tables, ctx.tz, row, f"{label}第{row.number}行")
        entry: dict[str, Any] = {}
        for key, rule in spec.fields.items():
            value = evaluate(f"{target}[{row.number}].{key}", rule, row_ctx, errors)
            if value is not OMIT:
                entry[key] = value
        out.append(entry)
    return out
