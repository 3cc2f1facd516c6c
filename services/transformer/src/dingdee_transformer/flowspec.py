"""Compile ``flows.yaml`` into the flows the transformer maps (start-up, ``dingdee mapping check``).

Validation errors name the flow and the key path (``flow 'petty-cash' mapping.fields.FExpID: …``);
cross-checks the schema cannot do (a lookup naming a missing reference table, a bad time zone) are
reported the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowEntry, FlowsFile, load_flows
from dingdee_common.followups import followup_of
from dingdee_transformer.refstore import RefStore, live_tables
from dingdee_transformer.rules import (
    CrossChecker,
    ModelBuilder,
    Template,
    compile_checks,
    compile_fields,
    compile_template,
    form_names,
)
from dingdee_transformer.schema import NUMERIC, FieldRule, MappingSpec, TargetSpec

__all__ = ["CompiledFlow", "compile_flows", "load_compiled"]


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    """One enabled flow, validated; reference tables, time zone and field rules resolved."""

    id: str
    process_code: str
    target: TargetSpec
    mapping: MappingSpec
    tables: Mapping[str, Mapping[str, str]]
    tz: ZoneInfo
    build_model: ModelBuilder  # mapping.fields compiled, with a slot for number_slot
    number_slot: str | None  # target.number_field when no rule sets it: the builder leaves it
    render_bill_key: Template  # target.bill_key compiled
    form_names: frozenset[str]  # the component ids and labels the flow reads
    checks: tuple[CrossChecker, ...] = ()  # mapping.checks compiled, run on a complete Model
    # issue #18: None when the flow has no follow-ups; else the attachment components whose
    # files the bill's SourceRef lists (empty: write-back only)
    followup_components: tuple[str, ...] | None = None


def _where(prefix: str, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after", "function-before"))
        lines.append(f"{prefix}.{loc}: {err['msg']}" if loc else f"{prefix}: {err['msg']}")
    return lines


def _iter_rules(prefix: str, fields: Mapping[str, FieldRule]) -> Iterator[tuple[str, FieldRule]]:
    for key, rule in fields.items():
        yield f"{prefix}.{key}", rule
        if rule.rows is not None:
            yield from _iter_rules(f"{prefix}.{key}.rows.fields", rule.rows.fields)


def _cross_check(
    flow_id: str, mapping: MappingSpec, tables: Mapping[str, Mapping[str, str]]
) -> list[str]:
    problems = [
        f"flow {flow_id!r} mapping.checks.{i}.sum_of: {problem}"
        for i, check in enumerate(mapping.checks)
        if (problem := _sum_of_problem(check.sum_of, mapping.fields))
    ]
    checked = [(f"mapping.checks.{i}.total", c.total) for i, c in enumerate(mapping.checks)]
    for path, rule in [*_iter_rules("mapping.fields", mapping.fields), *checked]:
        if rule.lookup is not None and rule.lookup not in tables:
            known = ", ".join(sorted(tables)) or "none"
            problems.append(
                f"flow {flow_id!r} {path}.lookup: no reference table {rule.lookup!r} "
                f"(declared: {known})"
            )
    return problems


def _sum_of_problem(path: str, fields: Mapping[str, FieldRule]) -> str | None:
    rows_key, row_key = path.split(".", 1)
    rows = fields[rows_key].rows if rows_key in fields else None
    if rows is None:
        return f"{rows_key} is not a rows field of this mapping"
    rule = rows.fields.get(row_key)
    if rule is None:
        return f"{rows_key} rows have no field {row_key}"
    if rule.convert not in NUMERIC or rule.ref is not None:
        return f"{path} is not a number (it needs convert: money, decimal or int, and no ref)"
    return None


def _compile_one(
    entry: FlowEntry, tables: Mapping[str, Mapping[str, str]], tz: ZoneInfo
) -> tuple[CompiledFlow | None, list[str]]:
    problems: list[str] = []
    target = mapping = None
    try:
        target = TargetSpec.model_validate(entry.target)
    except ValidationError as exc:
        problems += _where(f"flow {entry.id!r} target", exc)
    try:
        mapping = MappingSpec.model_validate(entry.mapping)
    except ValidationError as exc:
        problems += _where(f"flow {entry.id!r} mapping", exc)
    if mapping is not None:
        problems += _cross_check(entry.id, mapping, tables)
    components: tuple[str, ...] | None = None
    try:
        followup = followup_of(entry, source="")  # compile_flows names the file
        if followup is not None:
            spec = followup.attachments
            components = tuple(spec.components) if spec else ()
    except FatalError as exc:
        problems.append(exc.message)
    if problems or target is None or mapping is None:
        return None, problems
    process_code = str(entry.dingtalk.get("process_code", ""))
    # the bill key becomes the number unless a rule sets the number field itself
    number_slot = None if target.number_field in mapping.fields else target.number_field
    compiled = CompiledFlow(
        entry.id,
        process_code,
        target,
        mapping,
        tables,
        tz,
        compile_fields(mapping.fields, number_field=number_slot),
        number_slot,
        compile_template(target.bill_key),
        form_names(
            {**mapping.fields, **{f"check{i}": c.total for i, c in enumerate(mapping.checks)}},
            [target.bill_key],
        ),
        compile_checks(mapping.checks, mapping.fields),
        components,
    )
    return compiled, []


def compile_flows(
    flows: FlowsFile, *, source: str = "flows.yaml", store: RefStore | None = None
) -> dict[str, CompiledFlow]:
    """Validate every enabled flow's ``target`` and ``mapping``.

    ``store``: the live reference tables lookups read (issue #14); without one, live lookups
    read an empty store (every live lookup misses; static tables still answer).

    Raises:
        FatalError: one line per problem, each naming the file, the flow and the key path.
    """
    try:
        tz = ZoneInfo(flows.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FatalError(f"{source}: timezone: unknown time zone {flows.timezone!r}") from exc
    compiled: dict[str, CompiledFlow] = {}
    problems: list[str] = []
    tables = live_tables(store or RefStore(flows.references()), flows.reference_tables)
    for entry in flows.enabled():
        flow, errors = _compile_one(entry, tables, tz)
        problems += [f"{source}: {line}" for line in errors]
        if flow is not None:
            compiled[flow.id] = flow
    if problems:
        raise FatalError("\n".join(problems), code="config")
    return compiled


def load_compiled(path: Path | str, store: RefStore | None = None) -> dict[str, CompiledFlow]:
    """Read ``flows.yaml`` and compile it (lookups reading ``store``, see ``compile_flows``).

    Raises:
        FatalError: the file is missing or invalid; the message names flow and key path.
    """
    return compile_flows(load_flows(path), source=str(path), store=store)
