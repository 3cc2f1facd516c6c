"""A set of field rules as one Model builder, and ``rows`` rules: one builder run per table row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from dingdee_transformer.encodings import FormError
from dingdee_transformer.fieldrule import Evaluator, compile_value, wrap
from dingdee_transformer.rulebase import OMIT, Context, FieldError, RuleFailed, by_target, label_of
from dingdee_transformer.schema import FieldRule, RowsRule

__all__ = ["ModelBuilder", "compile_fields", "compile_rule"]

ModelBuilder = Callable[[Context, list[FieldError]], dict[str, Any]]
# (key, core, ref, named by target, slot of a shared core's result or -1)
_Plan = list[tuple[str, Evaluator, str | None, bool, int]]


def compile_rule(target: str, rule: FieldRule) -> Evaluator:
    """A rule that reads the approval (a value or a ``rows`` table) as one function.

    ``target`` names the field in errors; inside rows the caller renames the row's errors.
    """
    if rule.rows is not None:
        return _compile_rows(target, rule, rule.rows)
    return compile_value(target, rule)


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
    template, plan = _plan(fields, number_field)

    def build(ctx: Context, errors: list[FieldError]) -> dict[str, Any]:
        out = template.copy()
        done: dict[int, tuple[Any, list[FieldError]]] = {}
        for key, core, ref, named_by_target, slot in plan:
            if slot < 0:
                value = core(ctx, errors)
            elif slot in done:
                value, failed = done[slot]
                if failed:
                    errors.extend(_renamed(e, key, named_by_target) for e in failed)
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


def _plan(
    fields: Mapping[str, FieldRule], number_field: str | None
) -> tuple[dict[str, Any], _Plan]:
    """The Model's template (constants placed, other keys holding their place) and the plan of
    the rules to run per call, rules that differ only in ``ref`` sharing one core."""
    template: dict[str, Any] = {}
    cores: list[Evaluator] = []
    index: dict[tuple[str, tuple[str, ...]], int] = {}
    entries: list[tuple[str, int, str | None, bool]] = []
    for key, rule in fields.items():
        if rule.source_kind == "const":
            template[key] = wrap(rule.const, rule)
            continue
        template[key] = None  # the key's place; its value (or its absence) comes per call
        signature = (key, ()) if rule.rows is not None else _signature(rule)
        if signature not in index:
            index[signature] = len(cores)
            core = rule if rule.rows is not None else rule.model_copy(update={"ref": None})
            cores.append(compile_rule(key, core))
        entries.append((key, index[signature], None if rule.rows else rule.ref, by_target(rule)))
    if number_field is not None:
        template = _with_slot(template, fields, number_field)
    uses = Counter(i for _, i, _, _ in entries)
    plan = [(k, cores[i], ref, by, i if uses[i] > 1 else -1) for k, i, ref, by in entries]
    return template, plan


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


def _renamed(error: FieldError, target: str, by_target: bool) -> FieldError:
    return replace(error, target=target, label=target if by_target else error.label)


def _compile_rows(target: str, rule: FieldRule, spec: RowsRule) -> Evaluator:
    build_row = compile_fields(spec.fields)
    named_by_target = {key: by_target(field) for key, field in spec.fields.items()}
    table, min_rows, max_rows = spec.table, spec.min_rows, spec.max_rows

    def evaluate(ctx: Context, errors: list[FieldError]) -> Any:
        try:
            comp = ctx.form.find(table)
            if comp is None:
                raise RuleFailed("is missing from the form", "rows")
            label = comp.name or table
            try:
                rows = comp.rows()
            except FormError as exc:
                errors.append(FieldError(target, label, str(exc), "rows"))
                return OMIT
            if len(rows) < min_rows:
                raise RuleFailed(f"has {len(rows)} rows, at least {min_rows} needed", "min_rows")
            if max_rows is not None and len(rows) > max_rows:
                raise RuleFailed(f"has {len(rows)} rows, at most {max_rows} allowed", "max_rows")
        except RuleFailed as exc:
            errors.append(FieldError(target, label_of(target, rule, ctx), exc.problem, exc.rule))
            return OMIT
        except FormError as exc:
            errors.append(FieldError(target, label_of(target, rule, ctx), str(exc), "rows"))
            return OMIT
        out: list[dict[str, Any]] = []
        row_ctx = Context(ctx.form, ctx.attrs, ctx.tables, ctx.tz, None, label)
        row_errors: list[FieldError] = []
        for row in rows:
            row_ctx.row = row
            out.append(build_row(row_ctx, row_errors))
            if row_errors:  # name the row: FEntity[2].FAmount
                errors.extend(
                    _renamed(e, f"{target}[{row.number}].{e.target}", named_by_target[e.target])
                    for e in row_errors
                )
                row_errors.clear()
        return out

    return evaluate
