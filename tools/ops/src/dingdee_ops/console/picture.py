"""A flow as a picture: DingTalk template → each Kingdee field with its source, steps and checks →
Kingdee form. Built from the :class:`CompiledFlow` the transformer runs (its validated
``MappingSpec``), so the picture cannot disagree with what the transformer does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dingdee_common import codec
from dingdee_common.flows import FlowEntry
from dingdee_transformer.flowspec import CompiledFlow
from dingdee_transformer.refstore import LiveLookup
from dingdee_transformer.schema import DEFAULT_MAX_ABS, NUMERIC, FieldRule

__all__ = ["FieldView", "FlowPicture", "picture"]

SOURCE_LABELS = {
    "component": "钉钉表单控件 · DingTalk form component",
    "cell": "明细单元格 · table cell",
    "attr": "审批属性 · approval attribute",
    "template": "模板 · template",
    "const": "常量 · constant",
    "rows": "明细行 · rows of table",
}


@dataclass(frozen=True, slots=True)
class FieldView:
    """One Kingdee field of the picture."""

    target: str  # ``FEntity.FExpID`` for a row field
    depth: int  # 0: a head field, 1: a field of a rows entry
    kind: str  # component, cell, attr, template, const, rows
    source: str  # the component label, attribute, template text, constant (as JSON) or table
    steps: tuple[str, ...]
    checks: tuple[str, ...]

    @property
    def kind_label(self) -> str:
        return SOURCE_LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class FlowPicture:
    """What the flows page draws for one flow."""

    id: str
    description: str
    app: str
    process_code: str
    form_id: str
    number_field: str
    bill_key: str
    qualify: str
    on_linked_change: str
    save_options: str
    fields: tuple[FieldView, ...]
    cross_checks: tuple[str, ...]

    def field(self, target: str) -> FieldView:
        """The field view of ``target`` (``FEntity.FExpID`` for a row field)."""
        return next(f for f in self.fields if f.target == target)


def _source(rule: FieldRule) -> str:
    kind = rule.source_kind
    if kind == "const":
        return codec.dumps(rule.const).decode()
    if kind == "rows":
        assert rule.rows is not None  # noqa: S101 - source_kind says so
        return rule.rows.table
    return str(getattr(rule, kind))


def _map_text(mapping: Mapping[str, Any]) -> str:
    pairs = [f"{k} → {v}" for k, v in mapping.items()]
    return "映射 map: " + "; ".join(pairs)


def _lookup_text(name: str, table: Mapping[str, str]) -> str:
    """A static table by its size; a live lookup (issue #14) by where its rows come from."""
    if not isinstance(table, LiveLookup):
        return f"查表 lookup: {name} ({len(table)} 条 entries)"
    spec = table.spec
    if spec.via is not None:
        pairs = ", ".join(f"{left} = {right}" for left, right in spec.match)
        how = f"via {spec.via} ({pairs})"
    else:
        how = f"by {spec.by or 'key'}"
    override = f"; {len(table.static)} 条 static overrides" if table.static else ""
    return f"查表 lookup: {name} (实时 live: {spec.source} {how} → {spec.value}{override})"


def _steps(rule: FieldRule, tables: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
    steps: list[str] = []
    if rule.pick != "value":
        steps.append(f"取 pick: {rule.pick}")
    if rule.map is not None:
        steps.append(_map_text(rule.map))
    if rule.has_map_default:
        steps.append(f"映射默认 map_default: {rule.map_default}")
    if rule.lookup is not None:
        steps.append(_lookup_text(rule.lookup, tables.get(rule.lookup, {})))
    if rule.lookup_default is not None:
        steps.append(f"查表默认 lookup_default: {rule.lookup_default}")
    if rule.convert != "text":
        precision = f" (precision {rule.precision})" if rule.convert == "money" else ""
        steps.append(f"转换 convert: {rule.convert}{precision}")
    if rule.has_default:
        steps.append(f"默认 default: {rule.default}")
    if rule.ref is not None:
        steps.append(f"基础资料 ref: {{{rule.ref}: …}}")
    return tuple(steps)


def _checks(rule: FieldRule) -> tuple[str, ...]:
    checks: list[str] = []
    if rule.required:
        checks.append("必填 required")
    if rule.pattern is not None:
        checks.append(f"格式 pattern: {rule.pattern}")
    if rule.max_length is not None:
        checks.append(f"最长 max_length: {rule.max_length}")
    low, high = rule.bounds
    if low is not None:
        checks.append(f"≥ {low}")
    if high is not None:
        checks.append(f"≤ {high}")
    if rule.convert in NUMERIC:
        if rule.max_abs is not None or rule.convert == "money":
            checks.append(f"|x| ≤ {rule.max_abs or DEFAULT_MAX_ABS}")
        if rule.convert == "money":
            checks.append("可为负 negative allowed" if rule.allow_negative else "> 0 or refused")
            if rule.allow_zero:
                checks.append("可为零 zero allowed")
    if rule.rows is not None:
        rows = rule.rows
        most = f"..{rows.max_rows}" if rows.max_rows is not None else "+"
        checks.append(f"行数 rows: {rows.min_rows}{most}")
    return tuple(checks)


def _fields(
    fields: Mapping[str, FieldRule], tables: Mapping[str, Mapping[str, str]], prefix: str = ""
) -> list[FieldView]:
    out: list[FieldView] = []
    for key, rule in fields.items():
        target = f"{prefix}{key}"
        depth = 1 if prefix else 0
        view = FieldView(
            target, depth, rule.source_kind, _source(rule), _steps(rule, tables), _checks(rule)
        )
        out.append(view)
        if rule.rows is not None:
            out += _fields(rule.rows.fields, tables, f"{target}.")
    return out


def picture(flow: CompiledFlow, entry: FlowEntry | None = None) -> FlowPicture:
    """The picture of ``flow``; ``entry`` (its ``flows.yaml`` entry) adds description and app."""
    mapping = flow.mapping
    qualify = f"status ∈ {mapping.qualify.status}, result ∈ {mapping.qualify.result}"
    checks = tuple(
        f"{_source(c.total)} ({SOURCE_LABELS[c.total.source_kind]}) = Σ {c.sum_of}"
        for c in mapping.checks
    )
    return FlowPicture(
        id=flow.id,
        description=entry.description if entry is not None else "",
        app=str(entry.dingtalk.get("app", "")) if entry is not None else "",
        process_code=flow.process_code,
        form_id=flow.target.form_id,
        number_field=flow.target.number_field,
        bill_key=flow.target.bill_key,
        qualify=qualify,
        on_linked_change=mapping.on_linked_change,
        save_options=codec.dumps(flow.target.save_options).decode(),
        fields=tuple(_fields(mapping.fields, flow.tables)),
        cross_checks=checks,
    )
